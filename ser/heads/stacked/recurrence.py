"""Many independent LSTMs side by side: the members' BiLSTMs as one recurrence of batched products.

torch has no grouped LSTM kernel, so the stacked LSTM families run the recurrence themselves:
every member and direction is a group g, the input gates of all time steps are one batched
product before the loop, and each step is one batched product h_{t-1} W_hh^T for all groups plus
the cell's elementwise work. `GroupedLSTMRecurrence` writes the backward pass by hand (the
gradient of each step's gates, one batched product for dh, and dW_hh as one product over all
steps after the loop), so a step costs a few kernels, not an autograd graph of them.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from ser.heads.masking import frame_mask, reversal_source, swap_rows


class GroupedLSTMRecurrence(torch.autograd.Function):
    """G single-direction LSTM recurrences from zero state, PyTorch's gate order (i, f, g, o), time
    before batch so that a step's slice of every group is one contiguous block: input gates
    (G, T, B, 4H) (x W_ih^T + b_ih + b_hh), w_hh (G, 4H, H) → hidden states (G, T, B, H)."""

    @staticmethod
    def forward(ctx, input_gates: torch.Tensor, w_hh: torch.Tensor) -> torch.Tensor:
        G, T, B, H4 = input_gates.shape
        H = H4 // 4
        h = input_gates.new_zeros(G, B, H)
        c = input_gates.new_zeros(G, B, H)
        w_t = w_hh.transpose(1, 2)  # (G, H, 4H)
        hidden = input_gates.new_empty(G, T, B, H)
        cells = input_gates.new_empty(G, T, B, H)
        activations = input_gates.new_empty(G, T, B, H4)  # σ(i), σ(f), tanh(g), σ(o)
        for t in range(T):  # each step works on fresh contiguous tensors and stores them with one copy each
            gates = torch.baddbmm(input_gates[:, t], h, w_t)  # (G, B, 4H)
            acts = torch.cat([gates[..., :2 * H].sigmoid(), gates[..., 2 * H:3 * H].tanh(), gates[..., 3 * H:].sigmoid()], -1)
            i, f, g, o = acts.chunk(4, dim=-1)
            c = torch.addcmul(f * c, i, g)
            h = o * torch.tanh(c)
            activations[:, t] = acts
            cells[:, t] = c
            hidden[:, t] = h
        ctx.save_for_backward(w_hh, hidden, cells, activations)
        return hidden

    @staticmethod
    def backward(ctx, grad_hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        w_hh, hidden, cells, activations = ctx.saved_tensors
        G, T, B, H = hidden.shape
        grad_gates = torch.empty_like(activations)  # (G, T, B, 4H): d loss / d gate pre-activations
        dh = grad_hidden.new_zeros(G, B, H)  # from step t+1 through W_hh
        dc = grad_hidden.new_zeros(G, B, H)  # from step t+1 through the cell
        zeros = grad_hidden.new_zeros(G, B, H)
        for t in reversed(range(T)):
            acts = activations[:, t]  # (G, B, 4H)
            i, f, g, o = acts.chunk(4, dim=-1)
            slope = acts * (1 - acts)  # σ' of the i, f, o gates; the g gate's tanh' below
            slope[..., 2 * H:3 * H] = 1 - g * g
            tanh_c = torch.tanh(cells[:, t])
            dh = grad_hidden[:, t] + dh
            dc = torch.addcmul(dc, dh * o, 1 - tanh_c * tanh_c)
            previous_c = cells[:, t - 1] if t > 0 else zeros
            step = torch.cat([dc * g, dc * previous_c, dc * i, dh * tanh_c], dim=-1) * slope  # (G, B, 4H)
            grad_gates[:, t] = step
            dc = dc * f
            dh = torch.bmm(step, w_hh)  # (G, B, 4H) × (G, 4H, H)
        previous_h = F.pad(hidden[:, :-1], (0, 0, 0, 0, 1, 0)).view(G, T * B, H)  # h_{t-1}, zero at t = 0
        grad_w_hh = torch.bmm(grad_gates.view(G, T * B, 4 * H).transpose(1, 2), previous_h)  # Σ_t dgates_tᵀ h_{t-1}
        return grad_gates, grad_w_hh


def reverse_within_lengths(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each member's sequences of x (K, T, B, D) (time before batch) reversed inside their true lengths (K, B)."""
    K, T, B, D = x.shape
    source = reversal_source(lengths, T).transpose(1, 2)  # (K, T, B): the time step each (t, b) takes
    member = T * torch.arange(K, device=x.device)[:, None, None]  # (K, 1, 1)
    batch = torch.arange(B, device=x.device)  # (B,)
    rows = ((member + source) * B + batch).reshape(K * T * B)  # (K·T·B,) into x's rows
    return swap_rows(x.reshape(K * T * B, D), rows).view(K, T, B, D)


def grouped_bilstm(x: torch.Tensor, lengths: torch.Tensor, params: dict, prefix: str, num_layers: int,
                   dropout_masks: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Each member's bidirectional `nn.LSTM` (its parameters params[f"{prefix}.weight_ih_l0"] …, (K, …))
    over the true lengths of x (K, B, T, D) → (K, B, T, 2H), padding zero — what `heads.lstm.
    run_lstm_over_lengths` computes for one member. dropout_masks[n] (K, B, T, 2H) scales the
    output of layer n before layer n+1 (the inter-layer dropout each member drew)."""
    K, B, T, _ = x.shape
    valid = frame_mask(lengths.flatten(), T).view(K, B, T).transpose(1, 2)[..., None].to(x.dtype)  # (K, T, B, 1)
    h = x.transpose(1, 2).contiguous()  # (K, T, B, D): each step's rows of every member together
    for layer in range(num_layers):
        names = [f"{prefix}.{{}}_l{layer}{suffix}" for suffix in ("", "_reverse")]
        w_ih = torch.cat([params[name.format("weight_ih")] for name in names])  # (2K, 4H, D)
        w_hh = torch.cat([params[name.format("weight_hh")] for name in names])  # (2K, 4H, H)
        bias = torch.cat([params[name.format("bias_ih")] + params[name.format("bias_hh")] for name in names])  # (2K, 4H)
        inputs = torch.cat([h, reverse_within_lengths(h, lengths)])  # (2K, T, B, D): forward, then reversed
        gates = torch.baddbmm(bias[:, None, :], inputs.flatten(1, 2), w_ih.transpose(1, 2))  # (2K, T·B, 4H)
        out = GroupedLSTMRecurrence.apply(gates.view(2 * K, T, B, -1), w_hh)  # (2K, T, B, H)
        h = torch.cat([out[:K], reverse_within_lengths(out[K:], lengths)], dim=-1) * valid  # (K, T, B, 2H)
        if dropout_masks is not None and layer < num_layers - 1:
            h = h * dropout_masks[layer].transpose(1, 2)
    return h.transpose(1, 2)  # (K, B, T, 2H)
