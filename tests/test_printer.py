"""Receipt printing: ESC/POS bytes, connections, status and the print queue.

Receipts are sent to a real TCP printer emulator on loopback (and through a
socat pseudo-terminal for the serial link), then decoded back into lines and
compared with the text rendering of the same receipt.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kiosk.errors import PrinterError
from kiosk.hardware.printer import (
    PrintJob,
    PrintQueue,
    open_printer,
    parse_status,
    printable,
    printer_from_config,
    render_escpos,
)
from kiosk.hardware.printer.connection import usb_permission_hint
from kiosk.hardware.printer.render import code_page_for
from kiosk.receipt import Line, ReceiptSettings, render_lines, render_text
from kiosk.receipt_code import verify_code
from tests.conftest import need_tool
from tests.escpos_decode import decode
from tests.printer_emulator import PrinterEmulator
from tests.test_receipt import KEY, receipt_job

# Profiles whose fonts give each width: 58 mm font A and B, 80 mm font A.
PROFILES = {32: "POS-5890", 42: "POS-5890", 48: "TM-T20II"}
NAMES = {
    "Zoë Ñúñez-Müller Straße €5": "Zoë Ñúñez-Müller Straße €5",
    "Nguyễn Văn Đức, Łódź": "Nguyen Van Duc, Lódz",
    "王小明 Ahmad": "??? Ahmad",
    # Control characters never reach the printer as commands.
    "Siti\x1b@\x1dV\x00Nurhaliza": "Siti?@ V?Nurhaliza",
}


def expected_lines(lines: list[Line], columns: int, profile: str) -> list[str]:
    """What the paper should show: the text rendering in the printer's code page."""
    codec = code_page_for(profile).codec
    return [printable(text, codec) for text in render_text(lines, columns).splitlines()]


def job_for(name: str, **changes: Any) -> dict[str, Any]:
    return receipt_job(
        customer={"id": "CU-9", "name": name, "address": "Jl. Merdeka 1"}, **changes
    )


@pytest.fixture
def emulator() -> Iterator[PrinterEmulator]:
    with PrinterEmulator() as printer:
        yield printer


# --- ESC/POS bytes --------------------------------------------------------


@pytest.mark.parametrize("columns", [32, 42, 48])
@pytest.mark.parametrize("name", sorted(NAMES))
def test_escpos_receipt_decodes_line_by_line(columns: int, name: str) -> None:
    profile = PROFILES[columns]
    lines = render_lines(job_for(name), ReceiptSettings(columns=columns))
    data = render_escpos(lines, profile=profile, columns=columns)

    decoded = decode(data, profile)
    assert decoded.lines(columns) == expected_lines(lines, columns, profile)
    assert NAMES[name] in decoded.text
    assert (decoded.resets, len(decoded.code_pages)) == (1, 1)
    assert all(len(text) <= columns for text in decoded.lines(columns))


def test_escpos_job_starts_with_reset_and_code_page() -> None:
    lines = render_lines(job_for("Zoë"), ReceiptSettings(columns=48))
    data = render_escpos(lines, profile="TM-T20II", columns=48)
    page = code_page_for("TM-T20II")
    assert data.startswith(b"\x1b@\x1bt" + bytes([page.number]))
    assert page.name == "CP858"

    decoded = decode(data, "TM-T20II")
    assert decoded.resets == 1
    assert decoded.code_pages == [page.number]
    assert decoded.cuts == 1
    # Everything before the cut ends with a line feed.
    cut = data.rindex(b"\x1dV")
    assert data[:cut].rstrip(b"\x1bd\x04\x06").endswith(b"\n")


def test_escpos_font_b_for_42_columns_on_58mm() -> None:
    lines = render_lines(receipt_job(), ReceiptSettings(columns=42))
    decoded = decode(render_escpos(lines, profile="POS-5890", columns=42), "POS-5890")
    assert {item.font for item in decoded.items if item.kind == "text"} == {1}


def test_escpos_no_cutter_feeds_instead() -> None:
    lines = render_lines(receipt_job(), ReceiptSettings())
    data = render_escpos(lines, profile="POS-5890", columns=32)
    assert decode(data, "POS-5890").cuts == 0
    assert data.endswith(b"\n\x1bd\x04")


def test_escpos_styles_follow_the_lines() -> None:
    lines = render_lines(receipt_job(copy=1), ReceiptSettings(language="en"))
    decoded = decode(render_escpos(lines, profile="POS-5890", columns=32), "POS-5890")
    by_text = {item.text: item for item in decoded.items if item.kind == "text"}
    assert by_text["RECEIPT"].width == 2 and by_text["RECEIPT"].bold
    assert by_text["RECEIPT"].align == "center"
    assert by_text["*** COPY ***"].bold and by_text["*** COPY ***"].width == 1
    assert by_text["(reprint 1)"].align == "center"
    total = next(text for text in by_text if text.startswith("TOTAL"))
    assert by_text[total].bold
    assert not by_text["No.              KIOSK-01-000042"].bold


def test_escpos_native_qr_verifies() -> None:
    lines = render_lines(receipt_job(), ReceiptSettings())
    data = render_escpos(lines, profile="POS-5890", columns=32, native_qr=True)
    (code,) = decode(data, "POS-5890").qr_codes
    assert verify_code(KEY, code).receipt == "KIOSK-01-000042"


def test_escpos_image_qr_keeps_the_code_page() -> None:
    lines = render_lines(receipt_job(), ReceiptSettings())
    native = render_escpos(lines, profile="POS-5890", columns=32, native_qr=True)
    image = render_escpos(lines, profile="POS-5890", columns=32, native_qr=False)

    decoded = decode(image, "POS-5890")
    assert decoded.qr_codes == []
    assert [item.kind for item in decoded.items].count("image") == 1
    assert decoded.code_pages == [code_page_for("POS-5890").number]
    assert len(image) > len(native)
    assert len(native) <= 2400


def test_escpos_unknown_profile_is_a_printer_error() -> None:
    with pytest.raises(PrinterError, match="profile"):
        render_escpos([Line("x")], profile="NO-SUCH-PRINTER", columns=32)


def test_printable_keeps_one_character_per_character() -> None:
    text = "Ærøskøbing Œuvre ﬁne 한국"
    shown = printable(text, "cp858")
    assert len(shown) == len(text)
    assert shown.startswith("Ærøskøbing")


# --- status ---------------------------------------------------------------


def test_status_parse_normal_and_faults() -> None:
    ok = parse_status({1: b"\x16", 2: b"\x12", 4: b"\x12"})
    assert ok.ready and ok.known and ok.describe() == "ready"
    out = parse_status({1: b"\x1e", 2: b"\x32", 4: b"\x7e"})
    assert (out.paper_out, out.online, out.ready) == (True, False, False)
    assert "paper" in out.describe()
    cover = parse_status({1: b"\x1e", 2: b"\x16", 4: b"\x12"})
    assert cover.cover_open and not cover.ready
    low = parse_status({1: b"\x16", 2: b"\x12", 4: b"\x1e"})
    assert low.paper_near_end and low.ready


@pytest.mark.parametrize(
    "replies",
    [{}, {1: None}, {1: b""}, {1: b"\xff", 2: b"\x00", 4: b"\x12\x12"}, {4: b"abc"}],
)
def test_status_odd_replies_are_unknown(replies: dict[int, bytes | None]) -> None:
    status = parse_status(replies)
    assert not status.known
    assert status.ready
    assert status.describe() == "status unknown"


def test_status_from_emulator(emulator: PrinterEmulator) -> None:
    printer = open_printer(emulator.spec, timeout=2)
    assert printer.status().describe() == "ready"
    emulator.paper_near_end = True
    assert printer.status().paper_near_end
    emulator.paper_out = True
    assert printer.status().paper_out
    emulator.paper_out, emulator.cover_open = False, True
    assert printer.status().cover_open


@pytest.mark.parametrize("reply", [b"", b"\xff\xfe\xfd", b"garbage!"])
def test_status_odd_emulator_replies_never_raise(
    emulator: PrinterEmulator, reply: bytes
) -> None:
    emulator.status_reply = reply
    printer = open_printer(emulator.spec, timeout=0.3)
    assert not printer.status().known


def test_status_of_a_refusing_printer_is_offline(emulator: PrinterEmulator) -> None:
    emulator.refuse()
    assert open_printer(emulator.spec, timeout=1).status().online is False


# --- connections ----------------------------------------------------------


@pytest.mark.parametrize("columns", [32, 42, 48])
def test_tcp_prints_a_receipt(emulator: PrinterEmulator, columns: int) -> None:
    profile = PROFILES[columns]
    lines = render_lines(job_for("Zoë Ñúñez"), ReceiptSettings(columns=columns))
    with open_printer(emulator.spec, profile, timeout=2) as printer:
        printer.print_lines("000001-KIOSK-01-000042", lines, columns)

    (job,) = emulator.jobs
    decoded = decode(job, profile)
    assert decoded.lines(columns) == expected_lines(lines, columns, profile)
    assert decoded.status_requests == [1, 2, 4, 1]


def test_tcp_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    try:
        emulator = PrinterEmulator("::1").start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with emulator:
        assert emulator.spec.startswith("tcp:[::1]:")
        open_printer(emulator.spec, timeout=2).print_job("j", b"\x1b@hello\n", "")
        assert decode(emulator.jobs[0]).lines(32) == ["hello"]


def test_tcp_refused_names_the_printer(emulator: PrinterEmulator) -> None:
    emulator.refuse()
    printer = open_printer(emulator.spec, timeout=1)
    with pytest.raises(PrinterError, match=f"printer {emulator.spec}: cannot connect"):
        printer.print_job("j", b"\x1b@x\n", "")


def test_tcp_drop_mid_job_is_an_error(emulator: PrinterEmulator) -> None:
    emulator.drop_next(after_bytes=100)
    lines = render_lines(receipt_job(), ReceiptSettings())
    with pytest.raises(PrinterError, match=emulator.spec):
        open_printer(emulator.spec, timeout=2).print_lines("j", lines, 32)


def test_tcp_paper_out_sends_nothing(emulator: PrinterEmulator) -> None:
    emulator.paper_out = True
    with pytest.raises(PrinterError, match="out of paper"):
        open_printer(emulator.spec, timeout=2).print_job("j", b"\x1b@x\n", "")
    assert emulator.jobs == []


def test_tcp_printer_that_never_answers_still_prints(emulator: PrinterEmulator) -> None:
    emulator.status_reply = b""
    open_printer(emulator.spec, timeout=0.3).print_job("j", b"\x1b@quiet\n", "")
    assert decode(emulator.jobs[0]).lines(32) == ["quiet"]


def test_dir_writes_bytes_and_text(tmp_path: Path) -> None:
    lines = render_lines(receipt_job(), ReceiptSettings(columns=42))
    printer = open_printer(f"dir:{tmp_path / 'out'}")
    printer.print_lines("000007-KIOSK-01/000042", lines, 42)

    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["000007-KIOSK-01_000042.bin", "000007-KIOSK-01_000042.txt"]
    text = (tmp_path / "out" / "000007-KIOSK-01_000042.txt").read_text("utf-8")
    assert text == render_text(lines, 42)
    data = (tmp_path / "out" / "000007-KIOSK-01_000042.bin").read_bytes()
    assert decode(data, "POS-5890").lines(42) == expected_lines(lines, 42, "POS-5890")
    assert printer.status().ready


def test_dir_unwritable_is_a_printer_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PrinterError, match=f"printer dir:{blocker}"):
        open_printer(f"dir:{blocker}").print_job("j", b"x", "x")


def test_file_appends_to_an_existing_device(tmp_path: Path) -> None:
    device = tmp_path / "lp0"
    device.write_bytes(b"")
    printer = open_printer(f"file:{device}")
    printer.print_job("a", b"\x1b@one\n", "")
    printer.print_job("b", b"\x1b@two\n" * 600, "")
    assert decode(device.read_bytes()).lines(32)[:2] == ["one", "two"]
    assert not printer.status().known


def test_file_missing_device_is_not_created(tmp_path: Path) -> None:
    device = tmp_path / "lp9"
    with pytest.raises(PrinterError, match=f"printer file:{device}: cannot open"):
        open_printer(f"file:{device}").print_job("a", b"x", "")
    assert not device.exists()


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    socat = need_tool("socat")
    a, b = tmp_path / "printer", tmp_path / "kiosk"
    process = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while not (a.exists() and b.exists()) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert a.exists() and b.exists(), "socat made no pseudo-terminals"
        yield a, b
    finally:
        process.terminate()
        process.wait(5)


@pytest.mark.integration
def test_serial_prints_and_reads_status(pty_pair: tuple[Path, Path]) -> None:
    import serial

    printer_end, kiosk_end = pty_pair
    received = bytearray()
    done = threading.Event()

    def act_as_printer() -> None:
        # Answer status requests like a printer with paper, record the rest.
        with serial.Serial(str(printer_end), 19200, timeout=0.1) as port:
            while not done.is_set():
                chunk = port.read(4096)
                received.extend(chunk)
                for _ in range(chunk.count(b"\x10\x04")):
                    port.write(b"\x12")

    thread = threading.Thread(target=act_as_printer, daemon=True)
    thread.start()
    lines = render_lines(job_for("Zoë"), ReceiptSettings())
    try:
        with open_printer(f"serial:{kiosk_end}?baud=19200", timeout=2) as printer:
            printer.print_lines("j", lines, 32)
            assert printer.status().ready
    finally:
        done.set()
        thread.join(2)

    decoded = decode(bytes(received), "POS-5890")
    assert decoded.lines(32) == expected_lines(lines, 32, "POS-5890")


def test_serial_missing_port_is_a_printer_error(tmp_path: Path) -> None:
    spec = f"serial:{tmp_path / 'ttyUSB9'}"
    with pytest.raises(PrinterError, match=f"printer {spec}: cannot open"):
        open_printer(spec, timeout=0.5).print_job("j", b"x", "")


def test_usb_without_driver_or_device_is_a_printer_error() -> None:
    with pytest.raises(PrinterError, match="printer usb:0416:5011"):
        open_printer("usb:0416:5011").print_job("j", b"x", "")


def test_usb_permission_message_names_the_udev_rule() -> None:
    hint = usb_permission_hint(0x0416, 0x5011)
    assert 'ATTRS{idVendor}=="0416"' in hint and 'ATTRS{idProduct}=="5011"' in hint
    assert "/etc/udev/rules.d/" in hint


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "lpt:1",
        "tcp:",
        "tcp:[::1",
        "tcp:host:99999",
        "usb:12:34",
        "serial:/x?baud=f",
    ],
)
def test_bad_connection_string(spec: str) -> None:
    with pytest.raises(PrinterError, match="printer connection"):
        open_printer(spec)


def test_connection_strings() -> None:
    tcp = open_printer("tcp:[::1]:9101")
    assert (tcp.host, tcp.port) == ("::1", 9101)  # type: ignore[attr-defined]
    assert open_printer("tcp:printer.local").port == 9100  # type: ignore[attr-defined]
    serial_printer = open_printer("serial:/dev/ttyUSB0?baud=9600")
    assert serial_printer.baud == 9600  # type: ignore[attr-defined]
    assert open_printer("usb:04B8:0E15").vid == 0x04B8  # type: ignore[attr-defined]


def test_printer_from_config(tmp_path: Path) -> None:
    from kiosk.config import PrinterSection

    assert printer_from_config(PrinterSection()) is None
    section = PrinterSection(connection=f"dir:{tmp_path}", profile="TM-T20II")
    printer = printer_from_config(section)
    assert printer is not None and printer.profile == "TM-T20II"


# --- the print queue ------------------------------------------------------


class MemoryStore:
    """The store's print-job side, in memory, as the protocol describes it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.jobs: dict[int, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.changed = threading.Condition(self.lock)

    def add(self, payload: dict[str, Any], status: str = "queued") -> int:
        with self.lock:
            job_id = len(self.jobs) + 1
            self.jobs[job_id] = {
                "payload": payload,
                "status": status,
                "attempts": 0,
                "due": 0.0,
                "duplicate": False,
            }
            return job_id

    def start_up(self) -> None:
        """What the store does at start-up: a started job may have printed."""
        with self.lock:
            for job in self.jobs.values():
                if job["status"] == "started":
                    job["status"], job["duplicate"] = "queued", True

    def next_print_job(self) -> PrintJob | None:
        with self.lock:
            for job_id, job in sorted(self.jobs.items()):
                if job["status"] in ("queued", "failed") and job["due"] <= time.time():
                    return PrintJob(
                        job_id,
                        job["payload"]["kind"],
                        job["payload"],
                        job["attempts"],
                        job["duplicate"],
                    )
            return None

    def mark_print_started(self, job_id: int) -> None:
        with self.changed:
            self.jobs[job_id]["status"] = "started"

    def mark_printed(self, job_id: int) -> None:
        with self.changed:
            self.jobs[job_id]["status"] = "printed"
            self.changed.notify_all()

    def mark_print_failed(self, job_id: int, error: str, retry_at: float) -> None:
        with self.changed:
            job = self.jobs[job_id]
            job["status"], job["due"] = "failed", retry_at
            job["attempts"] += 1
            self.errors.append(error)
            self.changed.notify_all()

    def status(self, job_id: int) -> str:
        with self.lock:
            return str(self.jobs[job_id]["status"])

    def wait(self, condition: Any, timeout: float = 10) -> bool:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not condition():
                if time.monotonic() > deadline:
                    return False
                self.changed.wait(0.05)
        return True


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def start_queue(
    store: MemoryStore, spec: str, messages: list[str], **options: Any
) -> PrintQueue:
    queue = PrintQueue(
        store,
        open_printer(spec, timeout=options.pop("timeout", 1.0)),
        ReceiptSettings(language="en"),
        on_status=messages.append,
        retry_base_s=0.05,
        retry_max_s=0.2,
        poll_s=0.02,
        **options,
    )
    queue.start()
    return queue


def receipts_printed(emulator: PrinterEmulator) -> list[str]:
    return [
        line.split()[-1]
        for job in emulator.jobs
        for line in decode(job, "POS-5890").lines(32)
        if line.startswith("No. ")
    ]


def test_queue_prints_jobs_in_order(
    store: MemoryStore, emulator: PrinterEmulator
) -> None:
    first = store.add(receipt_job())
    second = store.add(receipt_job(receipt="KIOSK-01-000043", copy=1))
    messages: list[str] = []
    queue = start_queue(store, emulator.spec, messages)
    try:
        assert store.wait(lambda: store.jobs[second]["status"] == "printed")
    finally:
        queue.stop()

    assert store.status(first) == "printed"
    assert receipts_printed(emulator) == ["KIOSK-01-000042", "KIOSK-01-000043"]
    assert "*** COPY ***" in [
        line.strip() for line in decode(emulator.jobs[1]).lines(32)
    ]
    assert messages == []


@pytest.mark.parametrize("fault", ["refuse", "drop", "paper_out"])
def test_queue_job_waits_and_prints_once_printer_returns(
    store: MemoryStore, emulator: PrinterEmulator, fault: str
) -> None:
    if fault == "refuse":
        emulator.refuse()
    elif fault == "drop":
        emulator.drop_next(after_bytes=200)
    else:
        emulator.paper_out = True

    messages: list[str] = []
    job_id = store.add(receipt_job())
    queue = start_queue(store, emulator.spec, messages)
    try:
        assert store.wait(lambda: store.jobs[job_id]["attempts"] >= 1)
        assert store.status(job_id) != "printed"
        assert messages and messages[0].startswith("Printer problem: printer tcp:")

        emulator.paper_out = False
        emulator.accept()
        assert store.wait(lambda: store.jobs[job_id]["status"] == "printed")
    finally:
        queue.stop()

    complete = [
        job
        for job in emulator.jobs
        if any("[QR]" in line for line in decode(job).lines(32))
    ]
    assert len(complete) == 1
    assert messages[-1] == "Printer working again."
    # Said once per problem, not once per attempt.
    assert len(messages) <= 3


def test_queue_crash_mid_job_prints_possible_duplicate(
    store: MemoryStore, emulator: PrinterEmulator
) -> None:
    job_id = store.add(receipt_job(), status="started")
    store.start_up()
    queue = start_queue(store, emulator.spec, [])
    try:
        assert store.wait(lambda: store.jobs[job_id]["status"] == "printed")
    finally:
        queue.stop()
    lines = [line.strip() for line in decode(emulator.jobs[0]).lines(32)]
    assert "*** POSSIBLE DUPLICATE ***" in lines


def test_queue_wake_never_blocks_on_a_slow_printer(
    store: MemoryStore, emulator: PrinterEmulator
) -> None:
    emulator.reply_delay = 0.3
    queue = start_queue(store, emulator.spec, [], timeout=2.0)
    try:
        job_id = store.add(receipt_job())
        returned = threading.Event()

        def enqueue() -> None:
            queue.wake()
            returned.set()

        caller = threading.Thread(target=enqueue)
        caller.start()
        assert returned.wait(5)
        # The caller was back before the printer had even answered.
        assert store.status(job_id) != "printed"
        assert store.wait(lambda: store.jobs[job_id]["status"] == "printed")
    finally:
        queue.stop()


def test_queue_bad_job_does_not_block_the_next(
    store: MemoryStore, emulator: PrinterEmulator
) -> None:
    bad = store.add({"kind": "receipt"})
    good = store.add(receipt_job())
    queue = start_queue(store, emulator.spec, [])
    try:
        assert store.wait(lambda: store.jobs[good]["status"] == "printed")
    finally:
        queue.stop()
    assert store.status(bad) == "failed"
    assert any("print job" in error for error in store.errors)


def test_queue_without_printer_leaves_jobs_queued(store: MemoryStore) -> None:
    job_id = store.add(receipt_job())
    queue = PrintQueue(store, None, ReceiptSettings(), poll_s=0.01)
    queue.start()
    queue.wake()
    time.sleep(0.1)
    queue.stop()
    queue.stop()
    assert not queue.is_alive()
    assert store.status(job_id) == "queued"


def test_queue_dir_printer_names_files_by_receipt(
    store: MemoryStore, tmp_path: Path
) -> None:
    store.add(receipt_job(copy=2))
    queue = start_queue(store, f"dir:{tmp_path}", [])
    try:
        assert store.wait(lambda: store.jobs[1]["status"] == "printed")
    finally:
        queue.stop()
    assert sorted(os.listdir(tmp_path)) == [
        "000001-KIOSK-01-000042-copy2.bin",
        "000001-KIOSK-01-000042-copy2.txt",
    ]
