"""One training step of K heads as one stacked model against K solo heads, side by side.

The K members are the sweep's grid points (ShiftCNN: proportion × placement; the linear probe:
K initialisations, as seeds give), all on the same batch
(B=32, T=250, lengths in [T/2, T]); a step is forward, cross-entropy and backward. The stacked
model does the arithmetic of the K solo heads in one pass, so on CPU the ratio shows its
overhead (no FLOPs are saved); on a GPU it shows the launches it saves.

    python benchmarks/stacked.py                  # D=80 (fbank) and D=768 × 13 layers (wavlm-base)
    python benchmarks/stacked.py --members 16 --device cuda
    python benchmarks/stacked.py --head linear

2026-12-01, 2 cores, K=8, taking turns, fastest of 5: D=80 658 vs 550 ms (1.20); D=768 × 13
layers 23.8 vs 20.5 s (1.16). Single unpaired runs on this machine ranged 0.8-1.3 (its load
drifts). Before its tensors were joined with stack/unbind: about 1.4 (D=80) and 1.3-1.5 (D=768).
Later that day, with the MLP on real frames only (heads/stacked.py RealFrames), fastest of 3:
D=80 781 vs 751 ms (1.04); D=768 × 13 layers 22.2 vs 21.9 s (1.01). The solo heads here run
on the padding of this batch too; in a sweep the saving is larger, since members' batches come
from different length buckets.
Linear probe (`--head linear --repeats 3`), after its stacked form averaged over time before its
Linear (the two commute): D=80 3.0 vs 105.8 ms (0.03), D=768 × 13 layers 153 vs 880 ms (0.17).
Stacking it frame by frame like the CNN had taken 1.43 and 1.79: for a probe this thin the
copies into one (K, B, T, D) tensor cost more than the products. 2026-12-03, after the solo
probe also averaged before its projection (heads/linear.py), `--head linear --repeats 3`: D=80
1.0 vs 3.1 ms (0.32), D=768 × 13 layers 17.2 vs 104.6 ms (0.16).
Transformer, same day, after its relative terms became strided views (no gathers), `--head
transformer --dims 80 --repeats 2`, four runs with the old commit taking turns: 8 solo heads
4.4-4.6 s against 5.5-5.8 s before; stacked 6.0-10.7 s against 9.6-12.7 s. The stacked step's
(K·B, H, T, T) tensors are 640 MB each, and its times swing by 2x from run to run.
ShiftCNN, same day, after the depthwise convs became channels-last conv2d on the frames' own
layout (heads/cnn.py depthwise_conv_over_time; conv1d's backward had been 11% of the stacked
step), `--head shiftcnn --dims 80 --repeats 5`, old and new commits taking turns: 8 solo heads
388.7 / 386.9 -> 322.2 / 314.3 ms, stacked 364.4 / 357.2 -> 319.2 / 311.4 ms. The batched fbank
sweep of benchmarks/sweep.py (its `ser sweep --batch-runs on` command alone, twice each): 11.08 /
10.99 -> 10.22 / 10.49 s.
Transformer family and huge pages, 2026-12-01, `--dims 80 --repeats 3`, each head run with
THP_MEM_ALLOC_ENABLE=1 (what `ser` set until 2026-12-02) and =0, stacked / solo: shiftformer 1.14 (572 vs
504 ms) and 1.59 (983 vs 620 ms); transformer 1.35 (17.5 vs 12.9 s) and 1.69 (34.2 vs 20.3 s);
shiftcnn 1.08 (649 vs 602 ms) and 1.00 (666 vs 669 ms). Without huge pages every large stacked
tensor is page-faulted in again each step (ser/training/allocator.py); the solo transformer
itself took 1.57x longer on 4 KiB pages.
LSTM, TIM-Net and CTA-RNN families, 2026-12-01, K=8 initialisations, `--repeats 3` (2 for
ctarnn), stacked / solo: timnet D=80 1.11-1.43 over four runs (1.4 s vs 1.3 s), D=768 × 13
layers 1.06 (1.91 vs 1.81 s; 2.66 while the shared layer sum was one matmul that copied the
input transposed, 1.90 while the members' layer sums were padded into one (K, B, T, D) tensor);
lstm D=80 1.40-1.80 (0.9-1.3 s vs 0.65-0.81 s); ctarnn D=80 2.22 (9.0 vs 4.1 s). torch runs a
solo LSTM as one fused oneDNN kernel on CPU, the stacked families step through time with a few
batched kernels per step (heads/stacked/recurrence.py), so on CPU they cost more; on a GPU the
same loop is one launch per step for all K members instead of K.
Freed blocks kept in the heap (ser/training/allocator.py, every `ser` command since 2026-12-02)
against huge pages (THP_MEM_ALLOC_ENABLE=1, the default before), 2026-12-02, one run each,
8 solo heads / stacked, ms per step: shiftcnn D=80 (`--repeats 5`) 585 / 499 (0.85; a second
run 676 / 543) against 640 / 743 (1.16), and 665 / 855 with neither; shiftcnn D=768 × 13 layers
(`--repeats 2`) 28.3 / 22.3 s (0.79) against 32.3 / 31.6 s (0.98); shiftformer D=80 (`--repeats
3`) 407 / 379 (0.93) against 470 / 515 (1.09); timnet D=80 1241 / 982 (0.79) against 923 / 1077
(1.17). Peak RSS of these runs (both models in one process) grew by 27% at D=80 and 54% at D=768.
Huge pages on top of the kept heap were slower for the stacked model (shiftcnn D=80 565 / 587).
Real frames taken out and put back by row gathers in both directions (heads/stacked/real_frames.py)
instead of gather / scatter_add, 2026-12-03, old and new commit in turns, stacked ms per step:
shiftcnn D=80 381 -> 356 (2 threads), 720 and 735 -> 671 and 677 (OMP_NUM_THREADS=1);
shiftformer D=80 328 -> 302; timnet unchanged (it takes its frames once). The fbank batched sweep
(16 runs, `ser sweep --batch-runs on`, 2 workers) went from 14.4 and 13.8 s to 12.7 and 12.8 s,
with bit-identical parameters in every member's model.pt.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from ser.heads import create_head
from ser.heads.stacked import stacked_model
from ser.training.allocator import keep_freed_blocks

SEEDS_ONLY = ("linear", "timnet", "lstm", "ctarnn")
GRID = [(n_div, placement) for n_div in (2, 4, 8, 16) for placement in ("residual", "inplace")]


def fastest(steps: list, repeats: int) -> list[float]:
    """Each step's fastest of `repeats` timed calls, the steps taking turns (this machine's load
    drifts; turns keep the comparison fair), after one warm-up call of each."""
    for step in steps:
        step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, taken in zip(steps, times):
            started = time.perf_counter()
            step()
            taken.append(time.perf_counter() - started)
    return [min(taken) for taken in times]


def member_heads(name: str, dim: int, layers: int, members: int, device: torch.device) -> list:
    """K heads of family `name`: its grid points (proportion × placement; Shiftformer: proportion ×
    direction), or K initialisations (as seeds give) of a head without a shift grid here."""
    torch.manual_seed(0)
    if name in SEEDS_ONLY:
        return [create_head(name, dim, layers, 4).to(device) for _ in range(members)]
    grid = GRID if name != "shiftformer" else [(n_div, bidirectional) for n_div in (2, 4, 8, 16)
                                               for bidirectional in (True, False)]
    points = (grid * (members // len(grid) + 1))[:members]
    if name == "shiftformer":
        return [create_head(name, dim, layers, 4, n_div=n_div, bidirectional=bi).to(device) for n_div, bi in points]
    return [create_head(name, dim, layers, 4, n_div=n_div, shift_placement=placement).to(device)
            for n_div, placement in points]


def compare(name: str, dim: int, layers: int, members: int, device: torch.device,
            repeats: int) -> tuple[float, float]:
    """(K solo heads, one stacked model): seconds per training step."""
    heads = member_heads(name, dim, layers, members, device)
    x = torch.randn(32, layers, 250, dim, device=device)  # (B, L, T, D)
    lengths = torch.randint(125, 251, (32,), device=device)
    lengths[0] = 250
    targets = torch.randint(0, 4, (32,), device=device)
    stacked = stacked_model(heads, device)
    params = {name: torch.stack([dict(h.named_parameters())[name].detach() for h in heads]).requires_grad_()
              for name, _ in heads[0].named_parameters()}
    rngs = [torch.get_rng_state() if device.type == "cpu" else torch.cuda.get_rng_state(device) for _ in heads]

    def solo() -> None:
        for head in heads:
            torch.nn.functional.cross_entropy(head(x, lengths), targets).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def together() -> None:
        logits = stacked.forward(params, [(x, lengths)] * members, training=True, rng_states=rngs)  # (K, B, C)
        sum(torch.nn.functional.cross_entropy(logits[k], targets) for k in range(members)).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    solo_seconds, together_seconds = fastest([solo, together], repeats)
    return solo_seconds, together_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", choices=("shiftcnn", "transformer", "shiftformer", *SEEDS_ONLY), default="shiftcnn")
    parser.add_argument("--members", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dims", default="80,768", help="80 (fbank, 1 layer) and/or 768 (wavlm-base, 13 layers)")
    args = parser.parse_args()
    device = torch.device(args.device)
    kept = keep_freed_blocks()  # as `ser` commands do; MALLOC_MMAP_THRESHOLD_=33554432 measures glibc's own ceiling
    print(f"K = {args.members} {args.head} members, B=32, T=250, {device}, {torch.get_num_threads()} threads, "
          f"freed blocks kept: {'yes' if kept else 'no'}, THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 0)}")
    for dim in map(int, args.dims.split(",")):
        layers = 1 if dim == 80 else 13
        solo, together = compare(args.head, dim, layers, args.members, device, args.repeats)
        print(f"D={dim:4} × {layers:2} layers: {args.members} solo heads {1000 * solo:9.1f} ms, stacked "
              f"{1000 * together:9.1f} ms, ratio {together / solo:.2f}")


if __name__ == "__main__":
    main()
