"""The receipt printer: connections, ESC/POS rendering, status and print queue."""

from kiosk.hardware.printer.connection import (
    DirPrinter,
    FilePrinter,
    ReceiptPrinter,
    SerialPrinter,
    TcpPrinter,
    UsbPrinter,
    open_printer,
    printer_from_config,
)
from kiosk.hardware.printer.queue import PrintJob, PrintJobStore, PrintQueue
from kiosk.hardware.printer.render import printable, render_escpos
from kiosk.hardware.printer.status import PrinterStatus, parse_status

__all__ = [
    "DirPrinter",
    "FilePrinter",
    "PrintJob",
    "PrintJobStore",
    "PrintQueue",
    "PrinterStatus",
    "ReceiptPrinter",
    "SerialPrinter",
    "TcpPrinter",
    "UsbPrinter",
    "open_printer",
    "parse_status",
    "printable",
    "printer_from_config",
    "render_escpos",
]
