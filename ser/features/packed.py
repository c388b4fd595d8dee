"""All utterances of a cache in one tensor, so that training indexes batches directly."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PackedFeatures:
    """Utterance i is `frames[offsets[i]:offsets[i+1]]`; layers stay on axis 1."""

    ids: list[str]
    frames: torch.Tensor  # (ΣT, L, D), float16 (or float32), on CPU or GPU
    offsets: torch.Tensor  # (N+1,) int64, on the same device as frames

    @property
    def lengths(self) -> torch.Tensor:
        return self.offsets[1:] - self.offsets[:-1]  # (N,)

    @property
    def num_layers(self) -> int:
        return self.frames.shape[1]

    @property
    def dim(self) -> int:
        return self.frames.shape[2]

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self, ids: list[str]) -> torch.Tensor:
        """Row positions of `ids` (raises KeyError naming the first missing id)."""
        where = {utt: i for i, utt in enumerate(self.ids)}
        return torch.tensor([where[utt] for utt in ids], dtype=torch.long)

    def to(self, device: torch.device | str) -> "PackedFeatures":
        return PackedFeatures(self.ids, self.frames.to(device), self.offsets.to(device))

    def batch(self, rows: torch.Tensor, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero-padded batch of the given rows → (x: (B, L, T, D), lengths: (B,))."""
        rows = rows.to(self.offsets.device)
        starts = self.offsets[rows]  # (B,)
        lengths = self.offsets[rows + 1] - starts  # (B,)
        longest = int(lengths.max())
        if self.frames.device.type == "cpu":  # one slice copy per utterance: 2-8x the gather's speed on CPU
            x = torch.zeros((len(rows), longest, *self.frames.shape[1:]), dtype=dtype)  # (B, T, L, D)
            for i, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
                x[i, :length] = self.frames[start : start + length]
            return x.permute(0, 2, 1, 3), lengths  # (B, L, T, D), (B,)
        steps = torch.arange(longest, device=starts.device)  # (T,)
        valid = steps[None, :] < lengths[:, None]  # (B, T)
        frame_index = torch.where(valid, starts[:, None] + steps[None, :], 0)  # (B, T)
        x = self.frames[frame_index].to(dtype)  # (B, T, L, D)
        x = x * valid[:, :, None, None].to(dtype)  # padding is exactly zero
        return x.permute(0, 2, 1, 3), lengths  # (B, L, T, D), (B,)
