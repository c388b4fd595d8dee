"""A Keras TIM-Net training step, for the third column of benchmarks/heads.py.

Run with the Python of a separate virtual environment holding `tensorflow-cpu` and `tf-keras`
(it imports neither torch nor ser):

    python -m venv kerasenv && kerasenv/bin/pip install tensorflow-cpu tf-keras
    kerasenv/bin/python benchmarks/keras_timnet.py --dims 80,768 --steps 5

The layers are those of the official Keras model as reference.md describes them (1x1 input convs,
8 TABs per direction of [causal dilated Conv1D, kernel 2 → BatchNormalization → ReLU →
SpatialDropout1D 0.1] x 2 gating their input, a mean over time after each level, a learned weighted
sum of the levels, Dense), written here, trained with Adam (1e-3, betas 0.93 / 0.98) and label
smoothing 0.1 on a fixed-length batch: no masking. Prints {"timnet@D": ms per step} as JSON: the
median of --steps steps after one warm-up, B=32, T=250, inputs of D channels (one layer).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

layers = keras.layers


class LevelWeights(layers.Layer):
    """z = sum_j w_j g_j over the stacked level means (B, J, C), w initialised uniform in ±0.05."""

    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[1],),
                                 initializer=keras.initializers.RandomUniform(-0.05, 0.05))

    def call(self, x):
        return tf.einsum("bjc,j->bc", x, self.w)


def temporal_aware_block(x, dilation: int, channels: int, dropout: float):
    y = x
    for _ in range(2):
        y = layers.Conv1D(channels, 2, dilation_rate=dilation, padding="causal")(y)
        y = layers.BatchNormalization()(y)
        y = layers.Activation("relu")(y)
        y = layers.SpatialDropout1D(dropout)(y)
    return layers.Multiply()([x, layers.Activation("sigmoid")(y)])


def timnet(frames: int, dim: int, classes: int, channels: int = 39, levels: int = 8, dropout: float = 0.1):
    inputs = keras.Input((frames, dim))
    ahead = layers.Conv1D(channels, 1)(inputs)
    behind = layers.Conv1D(channels, 1)(layers.Lambda(lambda x: tf.reverse(x, axis=[1]))(inputs))
    pooled = []
    for level in range(levels):
        ahead = temporal_aware_block(ahead, 2**level, channels, dropout)
        behind = temporal_aware_block(behind, 2**level, channels, dropout)
        pooled.append(layers.GlobalAveragePooling1D()(layers.Add()([ahead, behind])))
    fused = LevelWeights()(layers.Lambda(lambda tensors: tf.stack(tensors, axis=1))(pooled))
    return keras.Model(inputs, layers.Dense(classes)(fused))


def measure(dims: list[int], steps: int) -> dict[str, float]:
    results = {}
    rng = np.random.default_rng(0)
    for dim in dims:
        model = timnet(250, dim, 4)
        model.compile(optimizer=keras.optimizers.Adam(1e-3, beta_1=0.93, beta_2=0.98),
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1))
        x = rng.standard_normal((32, 250, dim), dtype=np.float32)
        y = keras.utils.to_categorical(rng.integers(0, 4, 32), 4)
        times = []
        for _ in range(steps + 1):
            started = time.perf_counter()
            model.train_on_batch(x, y)
            times.append(time.perf_counter() - started)
        results[f"timnet@{dim}"] = 1000 * statistics.median(times[1:])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", default="80,768")
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(measure([int(d) for d in args.dims.split(",")], args.steps)))


if __name__ == "__main__":
    main()
