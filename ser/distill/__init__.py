"""Teacher–student distillation: the multimodal audio + text teacher (`teacher.py`), the
audio-only student trained on a quality-weighted mix of ground truth and the teacher's cross-fitted
predictions (`student.py`), and those targets and quality estimates (`targets.py`).

May import: `ser.training`, `ser.data`, `ser.features`, `ser.heads`, `ser.errors`, `ser.registry`.
Never its siblings `ser.finetune` and `ser.inference`: what they share lives in `ser.training`.
"""
