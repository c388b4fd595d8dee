"""Milliseconds per training step of every head: masked vs unmasked, idle vs a busy machine, thread settings.

For each head at D=80 (an fbank cache: 1 layer) and D=768 (a wavlm-base cache: 13 layers), batch
32 × 250 frames, one training step (forward, loss, backward, optimiser step) is timed:
  masked     utterance lengths spread over [T/2, T] (the heads mask their padding);
  unmasked   every frame real, with the padding helpers of ser.heads replaced by their no-mask
             versions (identity, plain mean, flip, a plain nn.LSTM call) and TIM-Net a plain
             PyTorch TIM-Net on the padded batch (conv1d, BatchNorm1d over every frame); measured
             here only, never used in training.
The masked and unmasked steps take turns (median of --steps each), so drift in this machine's
load shows in both.
Each setting runs in its own process (OpenMP reads its wait policy once, at import):
  default    what `ser` commands do: threads = CPUs this process may use, a waiting thread
             spins 1,000 rounds (~10 µs) and then sleeps (OMP_WAIT_POLICY=PASSIVE,
             GOMP_SPINCOUNT=1000), freed blocks kept in the heap (ser/training/allocator.py);
  passive    the default until 2026-12-03: a waiting thread sleeps at once (PASSIVE alone);
  huge pages the allocation before 2026-12-02: glibc's own thresholds, tensors over 2 MiB on huge
             pages (THP_MEM_ALLOC_ENABLE=1);
  active     the same threads, spinning while they wait (OMP_WAIT_POLICY=ACTIVE);
  spin 10k   the same threads, libgomp spinning 10,000 (100,000) rounds before it sleeps
  spin 100k  (GOMP_SPINCOUNT alone; libgomp's own default is 300,000);
  bound      the default's waits, each thread pinned to its own core (OMP_PROC_BIND=true,
             OMP_PLACES=cores);
  1 thread   the default's waits, one intra-op thread.
"busy" runs the same measurements while two background processes spin on the CPU (they stop
by themselves after --busy-seconds at most). Every ratio is measured side by side in one run.

    python benchmarks/heads.py                       # every head, both dims (minutes on 2 cores)
    python benchmarks/heads.py --heads shiftcnn,timnet --dims 80 --steps 3
    python benchmarks/heads.py --heads timnet --keras-python kerasenv/bin/python   # + Keras TIM-Net

Findings, 2 cores:
- 2026-12-01, background load average 5-11, `--dims 80 --steps 1`: ACTIVE (spinning) waits are
  the collapse. With 2 threads a step took 2-15x longer than with PASSIVE (timnet 13.6 s vs
  1.3 s, lstm 59 s vs 5.6 s), so PASSIVE is the default. 1 thread was the steadiest under extra
  load (busy/idle 0.7-1.2 for every head).
- Inter-op threads: not measured; a training step starts no inter-op work (no torch.jit.fork).
- The thread count cannot follow the load: 1 and 2 threads give different numbers (after three
  steps, parameters differ by up to 3e-5 for ctarnn, 2e-5 for timnet), so a default that chose
  fewer threads on a busy machine would make the same seed give other numbers.
- With two busy processes on two cores, a process gets about one core whatever its thread count
  (4 runnable threads share 2 cores), so busy/idle is at least the idle 2-thread speed-up (up to
  ~1.9 for the D=768 heads) plus what a thread waiting for its descheduled partner costs.
- 2026-12-01 (after the dense LSTM, TIM-Net's gathered BatchNorm, masked_mean as one product),
  `python benchmarks/heads.py --steps 3 --settings default`, masked/unmasked in turns, idle, at
  D=80 / D=768: linear 1.11 / 1.09, cnn 1.08 / 0.99, shiftcnn 1.07 / 1.02, lstm 1.05 / 1.25,
  shiftlstm 1.15 / 1.01, transformer 0.91 / 1.03, shiftformer 1.05 / 1.02, timnet 1.36 / 1.34,
  ctarnn 1.05 / 1.03. Busy/idle (masked): linear 1.42 / 1.75, cnn 1.17 / 1.23, shiftcnn
  1.37 / 1.35, lstm 1.07 / 1.96, shiftlstm 0.97 / 2.26, transformer 1.56 / 1.79, shiftformer
  1.78 / 1.34, timnet 2.17 / 2.09, ctarnn 1.35 / 1.35. This run's idle phase was itself slow
  (cnn@80 151 ms against 88 ms an hour earlier), which flatters busy/idle; the earlier run
  (`--steps 2`, D=768, not in turns) gave busy/idle 1.76-2.64: linear 2.05, cnn 1.94, shiftcnn
  1.91, lstm 2.14, shiftlstm 2.14, transformer 2.64, shiftformer 2.21, timnet 2.20, ctarnn 1.76.
  TIM-Net's masked step stayed about 1.35x: gathering and scattering the real frames of its 32
  small norms per step (copies of (B, C, T) tensors: 912 copy_ calls in 3 steps against 333);
  fixed below.
- 2026-12-01, TIM-Net on packed real frames (its blocks' convs as matrix products, a plain
  fused BatchNorm, no gathers), `python benchmarks/heads.py --heads timnet --steps 5 --settings
  "default,1 thread"`: masked / plain padded conv1d TIM-Net 1.11 at D=80, 0.75 at D=768 (was
  1.36 / 1.34); 1 thread 0.96 / 0.69. Busy/idle (default) 2.50 / 1.47, 1 thread 1.68 / 1.85.
- Then the forward and backward TABs of each level as one (a batched product and one norm over
  both directions' channels), same command, two runs: masked / plain 1.05 and 0.95 at D=80, 0.73
  and 0.67 at D=768; busy/idle (default) 1.70 and 1.47 at D=80, 2.29 and 2.26 at D=768; 1 thread
  1.24 and 1.37, 1.91 and 1.51. At D=768 two threads made the idle step only 1.14x faster than
  one (354 vs 402 ms) but lost 2.3x under load: the layer sum and the input projection read
  the (B, 13, T, 768) batch, and a thread waiting at each op's barrier for its descheduled partner
  costs more than the second thread gained.
- Keras TIM-Net column (benchmarks/keras_timnet.py in a venv with tensorflow-cpu 2.x and
  tf-keras; its model has the official 106,992 parameters at 39 MFCCs and 7 classes), `--heads
  timnet --steps 5 --settings "default,1 thread" --keras-python kerasenv/bin/python`, ms per
  step idle / busy: ser default 297 / 393 at D=80 and 352 / 492 at D=768 (busy/idle 1.33,
  1.40; 1 thread 0.99, 1.42); Keras 237 / 660 and 289 / 608 (busy/idle 2.78, 2.10). Idle, Keras
  is 0.80x ser's masked step (it neither masks nor sums 13 layers at D=768); under load ser is
  0.60x and 0.81x Keras's.
- Spin counts, same day, `--heads shiftcnn,timnet,lstm --steps 3 --settings "default,spin
  10k,spin 100k,1 thread"`: idle, spin 100k was up to 1.6x faster than PASSIVE on the small
  D=80 steps (lstm 91 vs 150 ms, timnet 202 vs 240 ms) but busy/idle grew to 2.2-6.9 (shiftcnn@80
  725 ms busy against 173 ms for PASSIVE); spin 10k sat between (busy/idle 1.6-2.6). PASSIVE's
  busy/idle was 1.06-2.66 and 1 thread's 1.32-2.29 in the same run, so PASSIVE stays the default.
  Busy/idle is noisy from run to run (timnet default 2.13 here, 2.50 an hour earlier); with two
  spinning processes on two cores it cannot fall much below the idle two-thread speed-up.
- 2026-12-02, `--heads timnet,shiftcnn,lstm --steps 3 --settings "default,1 thread"` (load
  average 3.2 before), masked/unmasked idle at D=80 / D=768: timnet 0.88 / 0.67, shiftcnn
  1.04 / 0.99, lstm 1.04 / 1.00. Busy/idle, default: timnet 1.72 / 1.39, shiftcnn 1.46 / 2.37,
  lstm 0.36 / 2.76 (its idle D=80 phase was slow: 294 ms against 90 ms with 1 thread); 1 thread:
  1.42 / 1.47, 1.40 / 1.57, 1.61 / 1.40. The D=768 heads whose second thread nearly halves the
  idle step (shiftcnn 2345 vs 5443 ms) are the ones over 2x busy, as above.
- 2026-12-02 11:35 UTC, every head, `--steps 3 --settings "default,1 thread"` (machine idle before
  the run: load average 0.8, 45 min), masked/unmasked idle at D=80 / D=768: linear 1.13 / 1.09,
  cnn 0.94 / 0.94, shiftcnn 1.04 / 0.94, lstm 1.00 / 1.05, shiftlstm 0.97 / 0.94, transformer
  1.04 / 1.00, shiftformer 1.06 / 0.98, timnet 1.02 / 0.71, ctarnn 0.99 / 1.06: every head within
  1.13. Busy/idle, default: linear 2.30 / 1.55, cnn 2.89 / 1.65, shiftcnn 2.13 / 1.75, lstm
  1.32 / 1.54, shiftlstm 1.17 / 1.91, transformer 1.75 / 1.84, shiftformer 2.19 / 1.67, timnet
  2.02 / 1.28, ctarnn 1.37 / 1.65: every D=768 head within 1.91, five D=80 heads over 2. 1 thread:
  linear 2.48 / 1.56, cnn 1.40 / 1.48, shiftcnn 1.41 / 1.40, lstm 1.71 / 1.60, shiftlstm 1.40 /
  1.53, transformer 1.55 / 1.60, shiftformer 1.25 / 1.66, timnet 1.49 / 1.71, ctarnn 1.56 / 1.26.
  The D=80 heads over 2 are those whose second thread speeds the idle step most (1-thread /
  2-thread idle ms: cnn 255 / 124 = 2.06, shiftcnn 1.86, shiftformer 1.57, timnet 1.42); with
  the busy processes a process gets about one core, so their busy/idle cannot fall much below
  that speed-up. linear@80 (a 25 ms step) was over 2 with one thread too in this run (57 vs 23
  ms) but 1.57 default / 1.81 one thread in the D=80 run under "Pinned threads": at D=80 these
  ratios move by about 0.5 from run to run.
- Pinned threads, 2026-12-02 (load average ~3 while idle), `--heads shiftcnn,lstm --dims 768
  --steps 3 --settings "default,bound,1 thread"`: busy/idle default 1.69 (shiftcnn) / 1.46
  (lstm), bound 1.60 / 1.61, 1 thread 1.77 / 1.81; but bound's idle steps were 1.4-1.7x slower
  (shiftcnn 8044 vs 4599 ms, lstm 6196 vs 4546 ms): a pinned thread cannot move off a core
  another process holds. Not adopted.
  Again at D=80 that afternoon (`--heads linear,cnn,shiftcnn,shiftformer,timnet --dims 80 --steps 3
  --settings "default,bound,1 thread"`, load average 2.7 before): busy/idle default 1.57, 1.87,
  1.92, 2.02, 1.17; bound 1.35, 1.47, 1.52, 1.59, 1.47; 1 thread 1.81, 1.70, 1.42, 1.51, 1.77.
  Bound's busy steps were faster than default's for four heads (shiftformer 312 vs 385 ms) and
  slower for timnet (839 vs 596 ms); its idle steps 0-21% slower. It is still not a default:
  with OMP_PROC_BIND set, libgomp binds the first thread of every process to the first place,
  so the one-thread fold and sweep workers would all run on CPU 0 (os.sched_getaffinity(0) is
  {0} after one torch op on 1 thread).
- 2026-12-02, every head, `--steps 3 --settings "default,1 thread"` (load average 3.0 before,
  35 min), masked/unmasked idle at D=80 / D=768: linear 1.08 / 1.27, cnn 1.08 / 1.05, shiftcnn
  1.13 / 1.02, lstm 0.97 / 1.04, shiftlstm 1.01 / 1.00, transformer 1.11 / 1.06, shiftformer
  1.02 / 1.07, timnet 0.94 / 0.81, ctarnn 1.07 / 1.00. Busy/idle, default: linear 1.97 / 1.46,
  cnn 2.98 / 2.05, shiftcnn 2.19 / 2.07, lstm 0.40 / 2.18, shiftlstm 0.51 / 2.38, transformer
  2.85 / 2.04, shiftformer 2.43 / 1.82, timnet 1.33 / 1.23, ctarnn 1.06 / 2.16; 1 thread: 1.00 /
  1.74, 1.87 / 1.87, 1.99 / 1.56, 1.80 / 1.65, 1.40 / 1.77, 2.15 / 1.60, 1.18 / 1.52, 1.38 /
  1.62, 1.33 / 2.43. Its idle lstm@80 took 287 ms with 2 threads against 111 ms with 1
  (shiftlstm 263 vs 97). On an idle machine (load average 0.2; a scratch loop of 5 LSTMHead steps
  at D=80, B=32, T=250) 2 threads took 150-286 ms and 1 thread 201-285 ms: the gap was the
  loaded machine's, so the recurrence keeps the default threads (running it on 1 thread inside
  autograd markers had cost 1.7x at D=768).
- Huge pages, 2026-12-01 (then the default; "4k pages" was glibc's own allocation), `--heads
  shiftcnn,timnet,lstm --steps 2 --settings "default,4k pages"`
  (one run): no consistent difference for solo heads (idle ms default / 4k pages: shiftcnn@80
  192 / 110, timnet@80 350 / 248, lstm@80 339 / 320, shiftcnn@768 5421 / 4358, timnet@768 266 /
  292, lstm@768 5038 / 4688; the idle phases ran one after the other and the first was slower);
  busy/idle default 1.58, 0.75, 0.41, 1.83, 1.56, 1.81 against 4k pages 1.40, 1.39, 0.79, 1.68,
  1.72, 1.61. Huge pages pay where tensors are far above glibc's 32 MiB mmap threshold: stacked
  models and attention (benchmarks/stacked.py).
- Brief spinning, 2026-12-03 (load average 2-3 before each run, left by the previous one): the
  idle recurrent steps with PASSIVE were the slow ones, again and again (lstm@80 224-231 ms idle
  against 84-400 ms busy). Each of the LSTM's many small parallel regions woke a sleeping thread,
  and on an idle virtual CPU that wake-up is slow. Letting a waiting thread spin first
  (PASSIVE with GOMP_SPINCOUNT), `--heads lstm,ctarnn,shiftcnn,timnet,shiftformer[,linear]
  --dims 80 --steps 5`, two runs, ms per step idle / busy: lstm PASSIVE 224 / 278 and 231 / 400,
  spin 1,000 51 / 153 and 50 / 157; ctarnn 566 / 396 and 559 / 404, spin 1,000 236 / 513 and
  221 / 547; shiftcnn, timnet, shiftformer and linear within noise of PASSIVE idle and busy
  (timnet busy 436 vs 358 and 246 vs 236). 300 rounds helped half as much (lstm 168 ms idle);
  3,000 and 10,000 rounds were no faster idle than 1,000 and slower busy (lstm 277 and 682 ms,
  ctarnn 762 and 1696 ms). At D=768 (`--heads lstm,ctarnn,shiftcnn,timnet --steps 3`), PASSIVE /
  spin 1,000 idle: lstm 1841 / 1635, ctarnn 1084 / 715, shiftcnn 1710 / 1629, timnet 224 / 214;
  busy: lstm 3191 / 3501, ctarnn 2242 / 1500, shiftcnn 3501 / 3569, timnet 316 / 526. One thread
  (same D=80 run): lstm 73 / 120, ctarnn 344 / 505. So `ser` spins 1,000 rounds (the "default"
  setting since); busy/idle of the recurrent heads rose (lstm@80 3.1) because their idle step
  got 2.5-4.5x faster, not because the busy step got slower.
  Then every head at D=80, `--settings "default,passive" --steps 5`, idle / busy ms, default
  against passive: lstm 44 / 123 vs 235 / 84, shiftlstm 48 / 130 vs 246 / 87, ctarnn 212 / 540
  vs 579 / 392, timnet 158 / 242 vs 184 / 222, shiftformer 48 / 89 vs 53 / 85, transformer 684 /
  1523 vs 684 / 1288, linear 7.3 / 13.9 vs 6.6 / 12.4, cnn 52 / 164 vs 58 / 95, shiftcnn 56 /
  166 vs 61 / 98. The cnn pair did not repeat with the order swapped (`--heads
  cnn,shiftcnn,lstm,ctarnn --settings "passive,default"`): cnn 60 / 99 vs 59 / 97, shiftcnn 59 /
  98 vs 61 / 100 (passive first), lstm 235 / 373 vs 52 / 159, ctarnn 579 / 1093 vs 219 / 542.
  Masked / unmasked idle in that run and the one before: every head within 1.12 except linear
  (1.21; a 7 ms step), timnet 0.89.
  Whole `ser train --head H --fold 1 --epochs 3 --workdir demo-workdir --model fbank` processes
  (the demo's cache, 2 threads), OMP_WAIT_POLICY=PASSIVE against the default, two runs each:
  shiftlstm 7.9 / 7.7 s against 3.8 / 3.7 s, ctarnn 15.7 / 15.7 s against 7.5 / 7.6 s, with
  byte-identical model.pt files (the spin count changes timing, not arithmetic).
- The linear probe averages each layer over the real frames before its layer sum and projection
  (they are affine per frame, so they commute; heads/linear.py), 2026-12-03, `--heads linear
  --settings default --steps 7`, ms idle / busy, before / after: D=80 6.7 / 12.4 → 1.5 / 1.0,
  D=768 69.8 / 149.2 → 15.9 / 31.8; masked/unmasked 1.05 / 1.11 → 1.09 / 0.63 (the unmasked
  variant's plain mean over T of the (B, L, T, D) batch is the slower reduction), busy/idle
  1.86 / 2.14 → 0.63 / 2.00. A 30-epoch `ser train --head linear` on the demo's cache ended
  with the same metrics and parameters within 4e-8 of the old order's.
- The relative key-query terms are strided views of the (…, T, 2T − 1) products instead of
  gathers (heads/transformer.py by_distance): the gathers and their scatter_add backward had been
  23% of a transformer step at D=80 (torch profiler, 2 threads). 2026-12-03, one step timed by a
  scratch loop (B=32, T=250, median of 5 after a warm-up), old and new commits taking turns: D=80
  686 / 669 → 575 / 581 ms, D=768 × 13 layers 3595 / 3273 → 3154 / 3145 ms; after six Adam steps
  the parameter sums agree to 3e-7 (D=80) and 7e-6 (D=768, of 3618).
- The CNN heads' depthwise conv runs as a channels-last conv2d on the (B, T, D) frames (no
  transposed copies; heads/cnn.py depthwise_conv_over_time). Conv + LayerNorm forward and backward
  alone, 2 threads: 8.8 -> 2.2 ms at D=80, 84 -> 19 ms at D=768. A whole shiftcnn step (scratch
  loop, B=32, T=250, old and new commits taking turns): D=80 51.9 / 52.0 -> 45.9 / 44.2 ms, D=768
  x 13 layers 1659 / 1686 -> 1543 / 1552 ms; parameters after 20 steps agree to rounding (sums
  within 2e-6 and 6e-6).
- End of 2026-12-03, every head, `--settings default`, masked/unmasked idle and busy/idle:
  D=80 (`--dims 80 --steps 5`, before the channels-last conv): linear 0.99 / 0.73, cnn 1.06 /
  2.70, shiftcnn 1.08 / 3.01, lstm 1.06 / 2.46, shiftlstm 1.11 / 2.54, transformer 1.02 / 2.25,
  shiftformer 1.07 / 1.81, timnet 0.92 / 1.47, ctarnn 1.08 / 2.54; after it (`--heads
  cnn,shiftcnn --steps 4`) cnn 1.06 / 1.95, shiftcnn 1.15 / 1.71. D=768 (`--dims 768 --steps
  3`, load average 3.8 before): linear 0.64 / 1.97, cnn 1.01 / 1.94, shiftcnn 1.03 / 1.96, lstm
  1.00 / 2.01, shiftlstm 1.02 / 2.01, transformer 1.02 / 1.90, shiftformer 1.02 / 2.06, timnet
  0.82 / 2.31, ctarnn 1.03 / 1.98 (idle ms: 14.7, 1430, 1389, 1573, 1599, 2962, 1422, 214, 694).
- `transformer` at D=80 takes about 2-3 s a step: its reference relative key-query attention
  with 10 heads of size 8 builds (B, H, T, T) tensors of 20M elements (scores, two position
  terms, softmax), and a (B, H, T, 8) x (8, 2T) product per position term.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

from ser.training.threads import WAIT_SETTINGS

SETTINGS = {  # name: (environment, intra-op threads, freed blocks kept; None = what `ser` commands use)
    "default": (WAIT_SETTINGS, None, True),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, None, True),
    "huge pages": ({**WAIT_SETTINGS, "THP_MEM_ALLOC_ENABLE": "1"}, None, False),
    "active": ({"OMP_WAIT_POLICY": "ACTIVE"}, None, True),
    "spin 10k": ({"GOMP_SPINCOUNT": "10000"}, None, True),
    "spin 100k": ({"GOMP_SPINCOUNT": "100000"}, None, True),
    "bound": ({**WAIT_SETTINGS, "OMP_PROC_BIND": "true", "OMP_PLACES": "cores"}, None, True),
    "1 thread": (WAIT_SETTINGS, 1, True),
}
SETTING_VARIABLES = {name for environment, _, _ in SETTINGS.values() for name in environment}  # what a child must not inherit
HEADS = ("linear", "cnn", "shiftcnn", "lstm", "shiftlstm", "transformer", "shiftformer", "timnet", "ctarnn")
BUSY = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


def plain_timnet_forward(head, x, lengths):
    """TIM-Net as a plain PyTorch model that ignores padding: conv1d on the padded (B, C, T) batch,
    nn.BatchNorm1d over every frame, flip, mean over all T. The head's own modules and weights."""
    import torch
    from torch.nn import functional as F

    def block(tab, y):  # (B, C, T) → (B, C, T)
        x = y
        for conv, norm in zip(tab.convs, tab.norms):
            y = conv(F.pad(y, ((conv.kernel_size[0] - 1) * tab.dilation, 0)))
            y = tab.dropout(F.relu(torch.nn.BatchNorm1d.forward(norm, y)))
        return x * torch.sigmoid(y)

    h = head.layer_sum(x).transpose(1, 2)  # (B, D, T)
    ahead, behind = head.forward_input(h), head.backward_input(h.flip(2))  # (B, C, T)
    pooled = []
    for forward_block, backward_block in zip(head.forward_blocks, head.backward_blocks):
        ahead, behind = block(forward_block, ahead), block(backward_block, behind)
        pooled.append((ahead + behind).mean(dim=2))  # (B, C)
    return head.classifier(torch.einsum("bjc,j->bc", torch.stack(pooled, dim=1), head.fusion))


@contextlib.contextmanager
def unmasked_heads():
    """While open, the padding helpers every head module imported are versions that ignore lengths,
    and TIM-Net is the plain model of `plain_timnet_forward`."""
    import torch

    import ser.heads as package
    from ser.heads import masking
    from ser.heads.timnet import TIMNetHead

    def zero_padding(x, lengths):
        return x

    def masked_mean(x, lengths):
        return x.mean(dim=1)

    def layer_means(x, lengths):
        return x.mean(dim=2)

    def frame_mask(lengths, max_len):
        return torch.ones(len(lengths), max_len, dtype=torch.bool, device=lengths.device)

    def reverse_within_lengths(x, lengths):
        return x.flip(1)

    def run_lstm_over_lengths(lstm, x, lengths):
        return lstm(x)[0]

    replacements = {"zero_padding": zero_padding, "masked_mean": masked_mean, "layer_means": layer_means,
                    "frame_mask": frame_mask, "reverse_within_lengths": reverse_within_lengths,
                    "run_lstm_over_lengths": run_lstm_over_lengths}
    originals = [(TIMNetHead, "forward", TIMNetHead.forward)]
    for name, module in list(sys.modules.items()):
        if name.startswith(package.__name__ + ".") or module is masking:
            originals += [(module, attribute, getattr(module, attribute)) for attribute in replacements
                          if hasattr(module, attribute)]
    TIMNetHead.forward = plain_timnet_forward
    for module, attribute, _ in originals[1:]:
        setattr(module, attribute, replacements[attribute])
    try:
        yield
    finally:
        for owner, attribute, original in originals:
            setattr(owner, attribute, original)


def measure(heads: list[str], dims: list[int], steps: int) -> dict[str, dict[str, float]]:
    """{"head@D": {"masked": ms, "unmasked": ms}} per training step in this process: the median of
    `steps` steps after a warm-up, the masked and the unmasked head taking turns (this machine's
    load drifts; turns keep the ratio fair)."""
    import torch

    from ser.heads import create_head
    from ser.training.recipes import build_optimizer, recipe_for

    results = {}
    for dim in dims:
        layers = 1 if dim == 80 else 13
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(32, layers, 250, dim, generator=generator)  # (B, L, T, D)
        lengths = torch.randint(125, 251, (32,), generator=generator)  # masked: lengths over [T/2, T]
        full = torch.full((32,), 250)  # unmasked: every frame real
        targets = torch.randint(0, 4, (32,), generator=generator)
        for name in heads:
            runs = {}
            for variant in ("masked", "unmasked"):
                torch.manual_seed(0)
                head = create_head(name, dim, layers, 4)
                runs[variant] = (head, build_optimizer(head, recipe_for(name)), [])

            def step(variant: str) -> None:
                head, optimizer, times = runs[variant]
                started = time.perf_counter()
                loss = torch.nn.functional.cross_entropy(head(x, lengths if variant == "masked" else full), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                times.append(time.perf_counter() - started)

            for repeat in range(steps + 1):  # the first step of each warms up
                step("masked")
                with unmasked_heads():
                    step("unmasked")
            results[f"{name}@{dim}"] = {variant: 1000 * statistics.median(times[1:])
                                        for variant, (_, _, times) in runs.items()}
    return results


def child(setting: str, heads: list[str], dims: list[int], steps: int) -> dict:
    """Run `measure` in a fresh process with the setting's OpenMP policy and thread count."""
    openmp, threads, keep_freed = SETTINGS[setting]
    env = {name: value for name, value in os.environ.items() if name not in SETTING_VARIABLES}
    env.update(openmp)
    code = ("import json, sys, torch\n"
            "sys.path.insert(0, 'benchmarks')\n"
            "from heads import measure\n"
            "from ser.training.allocator import keep_freed_blocks\n"
            "from ser.training.threads import use_threads\n"
            f"use_threads({threads!r})\n"
            + ("keep_freed_blocks()\n" if keep_freed else "") +
            f"print(json.dumps(measure({heads!r}, {dims!r}, {steps})))\n")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"measurement failed ({setting}):\n{done.stderr}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {setting}: {measured}", file=sys.stderr, flush=True)  # as it comes: the whole run takes long
    return {variant: {key: times[variant] for key, times in measured.items()} for variant in ("masked", "unmasked")}


def keras_child(python: str, dims: list[int], steps: int) -> dict[str, float]:
    """{"timnet@D": ms} of the Keras TIM-Net (benchmarks/keras_timnet.py) run by `python`."""
    done = subprocess.run([python, "benchmarks/keras_timnet.py", "--dims", ",".join(map(str, dims)),
                           "--steps", str(steps)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"the Keras measurement failed:\n{done.stderr[-2000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  keras: {measured}", file=sys.stderr, flush=True)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--dims", default="80,768")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per head (median), after one warm-up")
    parser.add_argument("--settings", default=",".join(SETTINGS))
    parser.add_argument("--busy-seconds", type=int, default=1800, help="the background load stops after this at most")
    parser.add_argument("--keras-python", default=None,
                        help="the Python of a venv with tensorflow-cpu and tf-keras: adds the Keras TIM-Net column")
    args = parser.parse_args()
    heads, dims = args.heads.split(","), [int(d) for d in args.dims.split(",")]
    settings = args.settings.split(",")

    from ser.training.threads import available_cpus

    keras = args.keras_python is not None and "timnet" in heads
    table: dict[tuple[str, str], dict] = {}
    for setting in settings:
        table[(setting, "idle")] = child(setting, heads, dims, args.steps)
    if keras:
        table[("keras", "idle")] = keras_child(args.keras_python, dims, args.steps)
    busy = [subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=args.busy_seconds)]) for _ in range(2)]
    try:
        for setting in settings:
            table[(setting, "busy")] = child(setting, heads, dims, args.steps)
        if keras:
            table[("keras", "busy")] = keras_child(args.keras_python, dims, args.steps)
    finally:
        for process in busy:
            process.kill()
            process.wait()

    print(f"ms per training step, B=32, T=250; {available_cpus()} CPUs available; load average before: "
          f"{os.getloadavg()[0]:.1f}; busy = 2 spinning background processes")
    columns = [(s, load, m) for s in settings for load in ("idle", "busy") for m in ("masked", "unmasked")]
    print(f"{'head@D':18}" + "".join(f"{s[:8] + ' ' + load + ' ' + m[:5]:>24}" for s, load, m in columns))
    for key in table[(settings[0], "idle")]["masked"]:
        print(f"{key:18}" + "".join(f"{table[(s, load)][m][key]:24.1f}" for s, load, m in columns))
    print("\nratios (per head): masked/unmasked idle · busy/idle masked, per setting")
    for key in table[(settings[0], "idle")]["masked"]:
        cells = []
        for s in settings:
            idle, loaded = table[(s, "idle")], table[(s, "busy")]
            cells.append(f"{s}: mask {idle['masked'][key] / idle['unmasked'][key]:.2f} "
                         f"busy {loaded['masked'][key] / idle['masked'][key]:.2f}")
        print(f"{key:18}" + "   ".join(cells))
    if keras:
        print("\nKeras TIM-Net (the same layers, fixed-length input, no masking, one input layer; TensorFlow's "
              "own threads), ms per step:")
        for key, idle in table[("keras", "idle")].items():
            loaded = table[("keras", "busy")][key]
            print(f"{key:18}idle {idle:.1f}   busy {loaded:.1f}   busy/idle {loaded / idle:.2f}")


if __name__ == "__main__":
    main()
