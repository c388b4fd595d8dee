"""A built-in emotional speech corpus synthesised with numpy/scipy: the demo and test corpus.

Source–filter synthesis: a jittered glottal pulse train, low-passed for spectral tilt, through
three formant resonators per syllable, with noise-burst consonants between vowels. Speakers
differ in pitch, formants, rate, voice quality and expressiveness (one female and one male voice
per session by default, like IEMOCAP); sessions differ in channel (gain, colouring, noise).

Every utterance draws valence, arousal and dominance (1–5) around its emotion's centre and the
audio is rendered from those continuous values: arousal drives pitch level and range, speaking
rate, loudness and tilt (strong cues); valence only nudges formants, jitter and pitch range (weak
cues); dominance adds a little loudness. The transcript's word choice follows valence. So arousal
is easy from audio, valence is hard from audio and easier from text.

The manifest's V/A/D columns are *ratings* of those latent values: latent + N(0, rater_noise),
clipped to 1–5, like the averaged annotator scores of real corpora. With rater_noise = 0 they are
the latent values themselves. Only a `rated_share` of the utterances get ratings (the others
keep their audio, transcript and category but no V/A/D, like the unrated speech of MSP-Podcast).
Noise and rated share come from their own random stream, so the audio, the transcripts and the
categorical labels do not depend on them.
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from ser.data.corpora.recipe import CorpusRecipe, corpus_frame
from ser.errors import UserInputError

SAMPLE_RATE = 16_000
CENTRES = {  # emotion: (valence, arousal, dominance) on 1–5
    "neutral": (3.0, 2.5, 2.8),
    "happy": (4.1, 3.7, 3.3),
    "angry": (1.9, 4.1, 4.2),
    "sad": (2.0, 1.8, 2.0),
}
SPREAD = 0.45  # per-utterance standard deviation of each dimension around the centre
RATER_NOISE = 0.0  # standard deviation of the ratings around the latent values
VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]])
BANDWIDTHS = np.array([70.0, 100.0, 160.0])
POSITIVE_WORDS = ("wonderful", "great", "love", "lovely", "glad", "fun", "perfect", "sunny", "thanks", "nice")
NEGATIVE_WORDS = ("terrible", "awful", "hate", "lost", "broken", "sorry", "tired", "wrong", "alone", "worse")
NEUTRAL_WORDS = ("the", "meeting", "table", "today", "train", "is", "on", "it", "we", "was", "report", "window")


@dataclass(frozen=True)
class Voice:
    speaker: str
    session: str
    gender: str
    f0: float  # Hz
    formant_scale: float
    rate: float  # syllables per second
    tilt: float  # pole of the glottal low-pass (higher = darker voice)
    jitter: float  # period perturbation, fraction of a period
    expressivity: float  # how strongly emotion changes this voice


@dataclass(frozen=True)
class Channel:
    gain_db: float
    colour: float  # pole of a one-pole low-pass
    noise: float  # noise standard deviation


def _voices(speakers: int, sessions: int, rng: np.random.Generator) -> list[Voice]:
    voices = []
    for i in range(speakers):
        female = i % 2 == 0
        voices.append(Voice(
            speaker=f"spk{i + 1:02d}",
            session=f"Ses{i * sessions // speakers + 1:02d}",
            gender="F" if female else "M",
            f0=rng.uniform(185, 235) if female else rng.uniform(100, 135),
            formant_scale=rng.uniform(1.1, 1.2) if female else rng.uniform(0.93, 1.02),
            rate=rng.uniform(3.5, 4.8),
            tilt=rng.uniform(0.86, 0.93),
            jitter=rng.uniform(0.006, 0.012),
            expressivity=rng.uniform(0.7, 1.3),
        ))  # fmt: skip
    return voices


def _channels(sessions: int, rng: np.random.Generator) -> dict[str, Channel]:
    return {
        f"Ses{s + 1:02d}": Channel(
            gain_db=rng.uniform(-4, 4), colour=rng.uniform(0.0, 0.5), noise=rng.uniform(0.002, 0.006)
        )
        for s in range(sessions)
    }


def _formant_filter(formants: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cascade of second-order resonators as one (b, a) with unit gain at 0 Hz."""
    a = np.array([1.0])
    for frequency, bandwidth in zip(formants, BANDWIDTHS):
        r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        a = np.convolve(a, [1.0, -2 * r * np.cos(2 * np.pi * frequency / SAMPLE_RATE), r * r])
    return np.array([a.sum()]), a


def _pulse_train(f0_track: np.ndarray, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Glottal pulses following `f0_track` (Hz per sample), each displaced by `jitter` of its period."""
    n = len(f0_track)
    phase = np.cumsum(f0_track) / SAMPLE_RATE
    starts = np.flatnonzero(np.diff(np.floor(phase))) + 1  # a new period begins
    periods = SAMPLE_RATE / f0_track[starts]
    positions = np.clip(np.round(starts + rng.normal(0, jitter, len(starts)) * periods), 0, n - 1).astype(int)
    source = np.zeros(n)
    np.add.at(source, positions, 1.0 + rng.normal(0, 0.05, len(positions)))  # 5% shimmer
    return source


def synthesize(voice: Voice, channel: Channel, vad: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """One utterance (float32 mono at 16 kHz) expressing (valence, arousal, dominance)."""
    from scipy.signal import lfilter  # here, not at import: the corpus registry loads this module

    valence, arousal, dominance = ((x - 3.0) / 2.0 for x in vad)  # each about -1 … 1
    e = voice.expressivity
    f0 = voice.f0 * 2 ** (e * 0.35 * arousal + 0.03 * valence)
    pitch_range = np.clip(3.0 + e * 2.5 * arousal + 1.0 * valence, 0.5, 9.0)  # semitones
    rate = voice.rate * (1 + e * 0.2 * arousal)
    tilt = np.clip(voice.tilt - 0.05 * e * arousal, 0.75, 0.97)
    jitter = voice.jitter * (1 - 0.4 * valence)
    formant_shift = 1 + 0.05 * valence  # a smile raises formants a little

    n = int(rng.uniform(1.0, 2.5) * SAMPLE_RATE)
    lead = int(0.08 * SAMPLE_RATE)
    syllables = max(2, round((n - 2 * lead) / SAMPLE_RATE * rate))
    weights = np.cumsum(rng.uniform(0.7, 1.3, syllables))
    bounds = lead + np.round(np.concatenate([[0], weights / weights[-1]]) * (n - 2 * lead)).astype(int)

    centres = (bounds[:-1] + bounds[1:]) / 2
    accents = np.interp(np.arange(n), centres, rng.uniform(-1, 1, syllables))
    declination = np.linspace(0.5, -0.5, n)
    f0_track = f0 * 2 ** (pitch_range * (0.6 * accents + 0.4 * declination) / 12)  # (n,) Hz
    source = _pulse_train(f0_track, jitter, rng)
    source = lfilter([1.0], [1.0, -tilt], lfilter([1.0], [1.0, -tilt], source))  # glottal roll-off
    source = np.diff(source, prepend=0.0)  # lip radiation
    source = source / (np.sqrt(np.mean(source**2)) + 1e-9) + rng.normal(0, 0.05, n)  # + breath

    signal = np.zeros(n)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        onset = start + int(0.3 * (stop - start))  # consonant, then vowel
        burst = lfilter([1.0, -1.0], [1.0, -0.5], rng.normal(0, 0.25, onset - start))
        signal[start:onset] = burst * np.hanning(onset - start)
        b, a = _formant_filter(VOWELS[rng.integers(len(VOWELS))] * voice.formant_scale * formant_shift)
        vowel = lfilter(b, a, source[onset:stop])
        signal[onset:stop] = vowel * np.sin(np.linspace(0, np.pi, stop - onset)) ** 0.5

    signal = lfilter([1 - channel.colour], [1.0, -channel.colour], signal)
    loudness_db = e * 6 * arousal + 2 * dominance + channel.gain_db + rng.uniform(-3, 3)
    signal *= 0.05 * 10 ** (loudness_db / 20) / (np.sqrt(np.mean(signal**2)) + 1e-9)
    signal += rng.normal(0, channel.noise, n)
    return np.clip(signal, -0.99, 0.99).astype(np.float32)


def transcript(valence: float, rng: np.random.Generator) -> str:
    """A short sentence whose sentiment words lean positive as `valence` (1–5) rises."""
    words = []
    for _ in range(rng.integers(4, 9)):
        if rng.random() < 0.35:
            positive = rng.random() < 1 / (1 + np.exp(-2.2 * (valence - 3)))
            pool = POSITIVE_WORDS if positive else NEGATIVE_WORDS
        else:
            pool = NEUTRAL_WORDS
        words.append(pool[rng.integers(len(pool))])
    return " ".join(words)


def _render(job: tuple) -> tuple[dict, tuple[float, float, float]]:
    """Synthesise one planned utterance into its wav file: its manifest row (ratings still unset) and
    its latent (valence, arousal, dominance). Runs in a worker when there are several."""
    voice, channel, emotion, k, seed, root = job
    rng = np.random.default_rng(seed)
    vad = tuple(float(np.clip(c + rng.normal(0, SPREAD), 1.0, 5.0)) for c in CENTRES[emotion])
    audio = synthesize(voice, channel, vad, rng)  # type: ignore[arg-type]
    utt_id = f"{voice.speaker}_{emotion}_{k:02d}"
    path = root / "wav" / voice.session / voice.speaker / f"{utt_id}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio, SAMPLE_RATE, subtype="PCM_16")
    row = {"id": utt_id, "path": str(path.resolve()), "label": emotion, "speaker": voice.speaker,
           "session": voice.session, "gender": voice.gender, "valence": None, "arousal": None, "dominance": None,
           "duration": len(audio) / SAMPLE_RATE, "text": transcript(vad[0], rng)}
    return row, vad


def _render_all(jobs: list[tuple], workers: int) -> list[tuple[dict, tuple[float, float, float]]]:
    """`_render` over `jobs` in order, in `workers` forked processes (each utterance has its own seed,
    so the corpus is the same for any number of workers)."""
    if workers <= 1:
        return [_render(job) for job in jobs]
    import scipy.signal  # noqa: F401 — once, before the fork, rather than in every worker

    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(_render, jobs, chunksize=max(1, len(jobs) // (8 * workers)))


def prepare_synthetic(
    root: Path, speakers: int = 8, sessions: int = 4, per_class: int = 12, seed: int = 0,
    rater_noise: float = RATER_NOISE, rated_share: float = 1.0, jobs: int = 1,
) -> pd.DataFrame:
    """Generate the corpus into ROOT/wav/<session>/<speaker>/ (in `jobs` processes) and return its
    manifest rows."""
    if speakers < 2 or not 1 <= sessions <= speakers or per_class < 1:
        raise UserInputError(
            f"synthetic: cannot make {speakers} speakers in {sessions} sessions with {per_class} clips per class",
            "use --speakers >= 2, 1 <= --sessions <= --speakers and --per-class >= 1",
        )
    if not rater_noise >= 0:
        raise UserInputError(f"synthetic: --rater-noise {rater_noise} is negative", "use 0 for noise-free ratings")
    if not 0 < rated_share <= 1:
        raise UserInputError(f"synthetic: --rated-share {rated_share} is outside (0, 1]",
                             "give the fraction of utterances that get V/A/D ratings, e.g. 0.3")
    if jobs < 1:
        raise UserInputError(f"synthetic: --jobs {jobs} is not a number of processes", "use --jobs 1 or more")
    root = Path(root)
    seeds = np.random.SeedSequence(seed)
    voice_seed, utterance_seed = seeds.spawn(2)
    (rating_seed,) = seeds.spawn(1)  # spawned after the others, so they stay as they were
    rating_rng = np.random.default_rng(rating_seed)
    voice_rng = np.random.default_rng(voice_seed)
    voices = _voices(speakers, sessions, voice_rng)
    channels = _channels(sessions, voice_rng)
    plan = [(voice, emotion, k) for voice in voices for emotion in CENTRES for k in range(per_class)]
    rendered = _render_all([(voice, channels[voice.session], emotion, k, child, root)
                            for (voice, emotion, k), child in zip(plan, utterance_seed.spawn(len(plan)))], jobs)
    for row, vad in rendered:  # ratings in plan order, from their own stream
        rating = np.clip(np.asarray(vad) + rater_noise * rating_rng.standard_normal(3), 1.0, 5.0)
        if rating_rng.random() >= rated_share:
            rating = np.full(3, np.nan)  # unrated
        row.update(valence=round(rating[0], 3), arousal=round(rating[1], 3), dominance=round(rating[2], 3))
    return corpus_frame([row for row, _ in rendered], "synthetic")


RECIPE = CorpusRecipe(
    name="synthetic",
    prepare=prepare_synthetic,
    default_scheme="session",
    labels=tuple(CENTRES),
    help="Built-in synthetic corpus generated into ROOT (4 emotions, 8 speakers, 4 sessions; V/A/D; transcripts)",
    options=("speakers", "sessions", "per_class", "seed", "rater_noise", "rated_share", "jobs"),
    generates_audio=True,
)
