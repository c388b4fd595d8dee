"""Audio I/O and resampling, backbones (HF models, fbank/mfcc frontends), the extraction loop,
and the HDF5 cache writer and reader.

Extraction takes plain utterance records (id, path, start, end); nothing here knows of
manifests, corpora or heads. May import: `ser.errors`, `ser.registry` only.
"""
