"""Using a trained model: `ser predict` and `ser.load` (`predict.py`), a run or exported folder
loaded with its folds' heads and scalers (`trained_model.py`), the backbone a run recorded
(`recorded_backbone.py`), and `ser export` with its model card (`export.py`, `model_card.py`).

May import: `ser.training`, `ser.data`, `ser.features`, `ser.heads`, `ser.errors`, `ser.registry`.
Never its siblings `ser.finetune` and `ser.distill`: a fine-tuned run is read through its run
directory (`backbone/`, `model.pt`), not through the fine-tuning code.
"""
