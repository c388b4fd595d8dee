"""`ser serve RUN_OR_EXPORT`: a trained model behind a URL (FastAPI + uvicorn, `pip install 'ser[serve]'`).

    GET  /          one self-contained page (serve_page.html): choose a file or record one, see the
                    label, probability bars and emotion over time
    GET  /health    {"status": "ok", "labels", "calibrated", "busy", "waiting"}
    POST /predict   multipart field `file` (`?segments=true` adds the windows) →
                    {"predictions": [row], "segments": [rows]}: the rows `ser predict --out x.json`
                    (and x.segments.json) write for that file, with its upload name as id and path

The model is loaded once. Predictions run one at a time on one worker thread (a capacity limiter
of 1), so concurrent requests queue; at most `max_waiting` wait, later ones get 503. Uploads over
`max_bytes` or `max_seconds` get 413, audio that cannot be used 422 with `ser predict`'s reason;
every `detail` is one line (an unknown query parameter, a missing `file` field: 422 too).
"""

import errno
import json  # no `from __future__ import annotations`: FastAPI reads the endpoint's annotations at runtime
import re
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ser.errors import AudioError, UserInputError
from ser.features.audio import probe_audio
from ser.features.records import UtteranceRecord
from ser.inference.predict import AUDIO_SUFFIXES, EmotionRecognizer

PAGE = Path(__file__).with_name("serve_page.html")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class ServeLimits:
    max_bytes: int = 25 * 2**20  # per upload
    max_seconds: float = 600.0  # audio per upload
    max_waiting: int = 64  # requests queued behind the one being predicted


def _upload_name(name: str | None) -> str:
    """A safe file name for the upload: its id in the answer and in every reason given."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name or "upload.wav").name).strip("._") or "upload.wav"


def _saved_name(name: str) -> str:
    """The upload's file name on disk: its audio suffix kept, else .wav appended."""
    return name if Path(name).suffix.lower() in AUDIO_SUFFIXES else name + ".wav"


def predict_upload(recognizer: EmotionRecognizer, path: Path, name: str, segments: bool) -> dict:
    """The answer for one saved upload: the rows `ser predict --out x.json` writes, id and path = `name`.
    Raises AudioError with `ser predict`'s reason when the file cannot be used."""
    result = recognizer.predict_records([UtteranceRecord(name, str(path))])
    if result.skipped:
        raise AudioError(name, next(iter(result.skipped.values())).replace(str(path), name))
    answer = {"predictions": _rows(result.table, name)}
    if segments:
        answer["segments"] = _rows(result.segments, name)
    return answer


def _rows(table, name: str) -> list[dict]:
    table = table.assign(path=name)
    return json.loads(table.to_json(orient="records"))  # the same text → floats as `ser predict --out x.json`


def create_app(recognizer: EmotionRecognizer, limits: ServeLimits = ServeLimits(), title: str = "ser"):
    """The FastAPI application around a loaded model."""
    import anyio
    from fastapi import FastAPI, File, HTTPException, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, JSONResponse

    app = FastAPI(title=f"ser serve: {title}", docs_url=None, redoc_url=None)
    worker = anyio.CapacityLimiter(1)  # one prediction at a time; the others wait their turn
    state = {"waiting": 0, "busy": 0}
    page = PAGE.read_text(encoding="utf-8").replace("{{TITLE}}", _html_escape(title))
    task = recognizer.model.task
    labels = list(task.labels) if task.name == "categorical" else list(task.dimensions)

    @app.exception_handler(RequestValidationError)
    async def one_line_reason(_request: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_reason(error.errors())}, status_code=422)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": title, "task": task.name, "labels": labels,
                "calibrated": recognizer.calibrated, "busy": state["busy"], "waiting": state["waiting"],
                "max_bytes": limits.max_bytes, "max_seconds": limits.max_seconds}

    @app.post("/predict")
    async def predict(request: Request, file: UploadFile = File(...), segments: bool = False) -> dict:
        unknown = sorted(set(request.query_params) - {"segments"})
        if unknown:  # e.g. ?uncalibrated=1, which would otherwise be ignored without a word
            raise HTTPException(422, f"unknown query parameter {unknown[0]!r}: /predict takes only "
                                     "segments=true|false; --uncalibrated and --min-confidence are `ser serve` options")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limits.max_bytes + 64 * 1024:
            raise HTTPException(413, f"the upload is larger than {_size(limits.max_bytes)}")
        name = _upload_name(file.filename)
        with tempfile.TemporaryDirectory(prefix="ser-serve-") as folder:
            path = Path(folder) / _saved_name(name)
            size = 0
            with path.open("wb") as out:
                while chunk := await file.read(READ_CHUNK):
                    size += len(chunk)
                    if size > limits.max_bytes:
                        raise HTTPException(413, f"the upload is larger than {_size(limits.max_bytes)}")
                    out.write(chunk)
            try:
                seconds = probe_audio(UtteranceRecord(name, str(path))).seconds
            except AudioError as error:
                raise HTTPException(422, error.reason.replace(str(path), name)) from None
            if seconds > limits.max_seconds:
                raise HTTPException(413, f"{name} is {seconds:.1f} s long; this server takes at most "
                                         f"{limits.max_seconds:g} s")
            if state["waiting"] >= limits.max_waiting:
                raise HTTPException(503, f"busy: {state['waiting']} requests are waiting; try again shortly")
            state["waiting"] += 1
            started = False
            try:
                async with worker:
                    state["waiting"], state["busy"], started = state["waiting"] - 1, state["busy"] + 1, True
                    try:
                        return await anyio.to_thread.run_sync(predict_upload, recognizer, path, name, segments)
                    except AudioError as error:
                        raise HTTPException(422, error.reason) from None
                    finally:
                        state["busy"] -= 1
            finally:
                if not started:  # cancelled while waiting (the client went away)
                    state["waiting"] -= 1

    return app


def _validation_reason(errors: list[dict]) -> str:
    """FastAPI's list of validation errors as one line, like every other `detail` of the server."""
    first = errors[0]
    field = str(first["loc"][-1])
    if field == "file" and first.get("type") == "missing":
        return "no file: send the audio as the multipart form field `file`"
    given = f"={first['input']!r}" if first.get("input") is not None else ""
    return f"{field}{given}: {first['msg']}"


def _size(count: int) -> str:
    return f"{count / 2**20:g} MiB"


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def check_host(host: str) -> str | None:
    """A warning line when the server would be reachable from other machines."""
    if host in LOCAL_HOSTS:
        return None
    return (f"warning: serving on {host}: anyone who can reach this machine can send audio to this model "
            "(no authentication); use --host 127.0.0.1 to keep it local")


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, before the model loads: an unknown host, a port in use or one
    this user may not open is one line now, not uvicorn's log line after "serving … on …"."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                               flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as error:
        raise UserInputError(f"--host {host!r} does not resolve to an address ({error.args[-1]})",
                             "give an IP address or a name that resolves, e.g. 127.0.0.1 or 0.0.0.0") from None
    listener = socket.socket(family, kind, protocol)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a just-closed server's port
    try:
        listener.bind(address)
    except OSError as error:
        listener.close()
        hint = {errno.EADDRINUSE: "another program listens there: stop it, or choose another --port",
                errno.EACCES: "ports below 1024 need administrator rights: choose e.g. --port 8000",
                errno.EADDRNOTAVAIL: "that address is not one of this machine's: use 127.0.0.1 or 0.0.0.0"}
        raise UserInputError(f"cannot listen on {host}:{port}: {error.strerror}",
                             hint.get(error.errno, "choose another --host or --port")) from None
    return listener


def serve(model_path: Path, host: str = "127.0.0.1", port: int = 8000, fold: str = "all",
          limits: ServeLimits = ServeLimits(), **options) -> None:
    """Load the model once and serve it until interrupted (`ser serve`)."""
    from importlib.util import find_spec

    missing = [name for name in ("fastapi", "uvicorn", "multipart") if find_spec(name) is None]
    if missing:
        raise UserInputError(f"ser serve needs {', '.join(missing)}", "pip install 'ser[serve]'")
    import uvicorn

    from ser.inference.predict import load

    with listening_socket(host, port) as listener:
        recognizer = load(model_path, fold, **options)
        app = create_app(recognizer, limits, title=Path(model_path).name)
        warning = check_host(host)
        if warning:
            print(warning, file=sys.stderr)
        print(f"serving {model_path} on http://{host}:{port}/ (Ctrl-C stops)", flush=True)
        uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False)).run(sockets=[listener])
