"""`ser serve` as a real subprocess on a free port: good and bad uploads, limits, 20 concurrent
requests, and the page driven by headless chromium (selenium)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("fastapi", reason="the serve extra (pip install '.[serve]') is not installed")
pytest.importorskip("uvicorn", reason="the serve extra (pip install '.[serve]') is not installed")

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def post(url: str, name: str, data: bytes, timeout: float = 120, field: str = "file") -> tuple[int, dict]:
    """POST one multipart file field; (status, JSON body)."""
    boundary = "ser-test-boundary-7d1f"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def trained(tmp_path_factory, build_fbank_workspace) -> dict:
    """A shiftcnn run on a synthetic fbank workspace, a clip and a 3-clip file of its audio."""
    from ser.training.config import TrainConfig
    from ser.training.run import run_training

    root = tmp_path_factory.mktemp("serve")
    workdir = build_fbank_workspace(root / "ws", speakers=4, sessions=2, per_class=2)
    config = TrainConfig.create("shiftcnn", {"spec_augment": False}, epochs=2, batch_size=8, lr=3e-3, standardize=True)
    run, _ = run_training(workdir, config, "1", model="fbank", device="cpu", run_name="served")
    clips = sorted((workdir / "data").rglob("*.wav"))
    audio = root / "audio"
    audio.mkdir()
    shutil.copy(clips[0], audio / "clip.wav")
    sf.write(audio / "long.wav", np.concatenate([sf.read(c, dtype="float32")[0] for c in clips[:6]]), 16000)
    return {"run": run, "audio": audio}


def ser_predict(trained: dict, name: str, segments: bool = False) -> dict:
    """What `ser predict NAME --out x.json` writes (run where the file is, so its id is NAME)."""
    out = trained["audio"] / f"{Path(name).stem}.expected.json"
    subprocess.run([sys.executable, "-m", "ser.cli", "predict", name, "--run", str(trained["run"]), "--out", str(out),
                    *(["--segments"] if segments else [])], cwd=trained["audio"], env=_env(), check=True,
                   capture_output=True)
    answer = {"predictions": json.loads(out.read_text())}
    if segments:
        answer["segments"] = json.loads(out.with_name(f"{out.stem}.segments.json").read_text())
    for rows in answer.values():
        for row in rows:
            row.pop("path")  # absolute for `ser predict`, the upload name for the server
    return answer


def without_paths(answer: dict) -> dict:
    return {key: [{k: v for k, v in row.items() if k != "path"} for row in rows] for key, rows in answer.items()}


@pytest.fixture(scope="module")
def server(trained):
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "ser.cli", "serve", str(trained["run"]), "--port", str(port),
                                "--max-upload-mb", "1", "--max-seconds", "30"], env=_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                health = json.loads(response.read())
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"ser serve did not start: {process.communicate()[0][-2000:]}")
            time.sleep(0.3)
    yield {"url": url, "health": health, "process": process}
    process.terminate()
    process.wait(timeout=30)


def test_health_and_a_good_upload_answer_what_ser_predict_writes(server, trained):
    assert server["health"]["status"] == "ok" and server["health"]["calibrated"] is True
    assert len(server["health"]["labels"]) == 4
    data = (trained["audio"] / "clip.wav").read_bytes()
    status, answer = post(server["url"] + "/predict", "clip.wav", data)
    assert status == 200, answer
    assert without_paths(answer) == ser_predict(trained, "clip.wav")
    assert answer["predictions"][0]["path"] == "clip.wav"  # never the server's temporary path
    status, answer = post(server["url"] + "/predict?segments=true", "long.wav", (trained["audio"] / "long.wav").read_bytes())
    assert status == 200 and len(answer["segments"]) >= 2
    assert without_paths(answer) == ser_predict(trained, "long.wav", segments=True)


def test_bad_uploads_get_422_and_too_large_or_too_long_ones_413(server, tmp_path):
    url = server["url"] + "/predict"
    status, answer = post(url, "corrupt.wav", b"RIFF this is not audio at all")
    assert status == 422 and "cannot read" in answer["detail"] and "corrupt.wav" in answer["detail"]
    status, answer = post(url, "notes.txt", b"a text file sent by mistake")
    assert status == 422 and answer["detail"].startswith("cannot read notes.txt: "), answer  # the name as sent
    assert "notes.txt.wav" not in answer["detail"], answer
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), 16000)
    status, answer = post(url, "empty.wav", empty.read_bytes())
    assert status == 422 and "empty" in answer["detail"] and "/tmp" not in answer["detail"].replace(str(tmp_path), "")
    status, answer = post(url, "nothing.wav", b"")
    assert status == 422, answer
    status, answer = post(url, "big.wav", os.urandom(1_100_000))
    assert status == 413 and "larger than 1 MiB" in answer["detail"]
    long = tmp_path / "long.wav"
    sf.write(long, np.zeros(8000 * 40, dtype=np.int16), 8000, subtype="PCM_16")  # 40 s in 640 kB
    status, answer = post(url, "long.wav", long.read_bytes())
    assert status == 413 and "40.0 s long" in answer["detail"] and "at most 30 s" in answer["detail"]
    assert server["process"].poll() is None  # none of them took the server down


def test_a_request_the_server_would_misread_gets_a_one_line_422(server, trained):
    url, clip = server["url"] + "/predict", (trained["audio"] / "clip.wav").read_bytes()
    status, answer = post(url + "?uncalibrated=1", "clip.wav", clip)  # not ignored without a word
    assert status == 422 and answer["detail"].startswith("unknown query parameter 'uncalibrated': /predict takes only")
    status, answer = post(url + "?segments=maybe", "clip.wav", clip)
    assert (status, answer["detail"]) == (422, "segments='maybe': Input should be a valid boolean, unable to interpret input")
    status, answer = post(url, "clip.wav", clip, field="audio")
    assert (status, answer["detail"]) == (422, "no file: send the audio as the multipart form field `file`")


def test_twenty_concurrent_requests_queue_and_all_get_ser_predicts_answer(server, trained):
    expected = ser_predict(trained, "clip.wav")
    data = (trained["audio"] / "clip.wav").read_bytes()
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: post(server["url"] + "/predict", "clip.wav", data, timeout=300), range(20)))
    assert [status for status, _ in answers] == [200] * 20
    assert all(without_paths(answer) == expected for _, answer in answers)


def _chromium() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _headless_chromium(webdriver, tmp_path: Path, *extra_flags: str):
    """A headless chromium driven by selenium, with its own profile under tmp_path."""
    browser, driver_path = _chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 f"--user-data-dir={tmp_path / 'profile'}", *extra_flags):
        options.add_argument(flag)
    return webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path), options=options)


@pytest.mark.skipif(_chromium() is None, reason="chromium and chromedriver are not installed "
                                                "(apt-get install chromium chromium-driver)")
def test_the_page_uploads_a_file_and_draws_the_label_and_one_point_per_window(server, trained, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = _headless_chromium(webdriver, tmp_path)
    try:
        driver.get(server["url"] + "/")
        assert "Speech emotion recognition" in driver.page_source
        assert "http" not in " ".join(e.get_attribute("src") or "" for e in driver.find_elements(By.CSS_SELECTOR, "[src]"))
        driver.find_element(By.ID, "file").send_keys(str(trained["audio"] / "long.wav"))
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state"))
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", \
            driver.find_element(By.ID, "error").text
        expected = ser_predict(trained, "long.wav", segments=True)
        assert driver.find_element(By.ID, "label").text == expected["predictions"][0]["prediction"]
        points = driver.find_elements(By.CSS_SELECTOR, "svg#timeline circle.window")
        assert len(points) == len(expected["segments"]) >= 2
        assert len(driver.find_elements(By.CSS_SELECTOR, "svg#timeline polyline.class-line")) == 4
        assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 4
    finally:
        driver.quit()


@pytest.mark.skipif(_chromium() is None, reason="chromium and chromedriver are not installed "
                                                "(apt-get install chromium chromium-driver)")
def test_the_page_records_from_the_microphone_and_predicts_the_recording(server, trained, tmp_path):
    """The Record button end to end: chromium's fake microphone plays a demo clip, the page records
    it (MediaRecorder), decodes it, sends it as WAV and shows the answer."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    microphone = tmp_path / "microphone.wav"
    clip, rate = sf.read(trained["audio"] / "clip.wav", dtype="float32")
    sf.write(microphone, np.tile(clip, 3), rate)
    driver = _headless_chromium(webdriver, tmp_path, "--use-fake-ui-for-media-stream",
                                "--use-fake-device-for-media-stream", f"--use-file-for-fake-audio-capture={microphone}",
                                "--autoplay-policy=no-user-gesture-required")
    try:
        driver.get(server["url"] + "/")
        record = driver.find_element(By.ID, "record")
        record.click()
        WebDriverWait(driver, 30).until(lambda d: "Stop" in d.find_element(By.ID, "record").text
                                        or d.find_element(By.ID, "error").text)
        assert driver.find_element(By.ID, "error").text == ""
        time.sleep(2.5)  # record about 2.5 s of the clip
        record.click()
        WebDriverWait(driver, 120).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state"))
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", \
            driver.find_element(By.ID, "error").text
        assert driver.find_element(By.ID, "label").text in server["health"]["labels"]
        assert driver.find_element(By.ID, "status").text.startswith("recording.wav: ")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#bars .bar")) == 4
        assert driver.find_element(By.ID, "record").text == "● Record"
    finally:
        driver.quit()


def test_a_port_in_use_or_an_unknown_host_is_one_line_before_the_model_loads(server, trained):
    """Both printed "serving … on http://…" and then uvicorn's `ERROR: [Errno 98] address already in
    use` (or `Name or service not known`)."""
    port = server["url"].rsplit(":", 1)[1]  # the running server holds it
    for options, expected, hint in (
            (["--port", port], f"error: cannot listen on 127.0.0.1:{port}: Address already in use",
             "hint: another program listens there: stop it, or choose another --port"),
            (["--host", "no-such-host.invalid"], "error: --host 'no-such-host.invalid' does not resolve to an address",
             "hint: give an IP address or a name that resolves")):
        refused = subprocess.run([sys.executable, "-m", "ser.cli", "serve", str(trained["run"]), *options], env=_env(),
                                 capture_output=True, text=True, timeout=120)
        lines = [line for line in (refused.stdout + refused.stderr).splitlines() if line.strip()]
        assert refused.returncode == 2 and len(lines) == 2, refused.stdout + refused.stderr
        assert lines[0].startswith(expected) and lines[1].startswith(hint), lines
