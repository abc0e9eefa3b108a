"""Make the demo's assignment document and GPS drive (deterministic)."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

from kiosk.nmea_out import drive
from kiosk.pins import hash_pin

HERE = Path(__file__).resolve().parent
BASE_DATE = dt.date(2026, 12, 1)

FIRST = [
    "Siti",
    "Budi",
    "Dewi",
    "Ahmad",
    "Rina",
    "Agus",
    "Sri",
    "Joko",
    "Putu",
    "Wayan",
    "Nur",
    "Eko",
    "Lestari",
    "Hendra",
    "Yuliana",
    "Bambang",
]
LAST = [
    "Rahayu",
    "Santoso",
    "Lestari",
    "Fauzi",
    "Wijaya",
    "Hartono",
    "Kusuma",
    "Saputra",
    "Arsana",
    "Hidayat",
    "Pratama",
    "Nugroho",
]
# Names in other scripts and with accents, as a real branch's customers have.
SPECIAL = [
    "Tan Wei Ming (陈伟明)",
    "Nguyễn Thị Hoa",
    "José Ramírez",
    "Zoë Müller",
    "Lim Siew Lan (林秀兰)",
    "Ñoman Pérez",
    "Αλέξης Παπαδόπουλος",
    "Ахмед Каримов",
    "سارة أحمد",
    "Françoise Lefèvre",
]
STREETS = [
    "Jl. Asia Afrika",
    "Jl. Braga",
    "Jl. Dago",
    "Jl. Riau",
    "Jl. Merdeka",
    "Jl. Cihampelas",
    "Jl. Pasteur",
    "Jl. Setiabudi",
    "Jl. Buah Batu",
    "Jl. Gatot Subroto",
]
# A loop through central Bandung; customers sit near it.
ROUTE = [
    (-6.9218, 107.6071),
    (-6.9175, 107.6090),
    (-6.9105, 107.6095),
    (-6.8995, 107.6130),
    (-6.8935, 107.6105),
    (-6.8990, 107.6000),
    (-6.9050, 107.5960),
    (-6.9140, 107.5980),
    (-6.9218, 107.6071),
]


def _point_on_route(share: float) -> tuple[float, float]:
    legs = len(ROUTE) - 1
    position = share * legs
    index = min(int(position), legs - 1)
    t = position - index
    (a_lat, a_lon), (b_lat, b_lon) = ROUTE[index], ROUTE[index + 1]
    return a_lat + (b_lat - a_lat) * t, a_lon + (b_lon - a_lon) * t


def build(customers: int = 40, seed: int = 7) -> tuple[dict, list[str]]:
    rng = random.Random(seed)
    doc: dict = {
        "mode": "replace",
        "as_of": 0,
        "collectors": [
            {
                "id": "c1",
                "name": "Budi Collector",
                "role": "collector",
                "pin_hash": hash_pin("1234"),
            },
            {
                "id": "c2",
                "name": "Rina Collector",
                "role": "collector",
                "pin_hash": hash_pin("2345"),
            },
            {
                "id": "s1",
                "name": "Sari Supervisor",
                "role": "supervisor",
                "pin_hash": hash_pin("9999"),
            },
        ],
        "customers": [],
        "contracts": [],
        "assignments": [],
    }
    stops = []
    for n in range(customers):
        share = (n + 0.5) / customers
        lat, lon = _point_on_route(share)
        # Within a street or two of the route; one in ten is far off it.
        spread = 0.02 if n % 10 == 9 else 0.0006
        lat += rng.uniform(-spread, spread)
        lon += rng.uniform(-spread, spread)
        name = (
            SPECIAL[n // 4]
            if n % 4 == 3 and n // 4 < len(SPECIAL)
            else (f"{rng.choice(FIRST)} {rng.choice(LAST)}")
        )
        cid, kid = f"CU-{n + 1:03d}", f"K-{n + 1:03d}"
        doc["customers"].append(
            {
                "id": cid,
                "name": name,
                "phone": f"+62 81{rng.randint(1, 9)} "
                f"{rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
                "address": f"{rng.choice(STREETS)} No. {rng.randint(1, 220)}, Bandung",
                "lat": round(lat, 6),
                "lon": round(lon, 6),
                "radius_m": 150,
            }
        )
        installment = rng.choice([350_000, 500_000, 750_000, 1_250_000, 2_100_000])
        count = rng.choice([6, 12, 18, 24])
        behind = rng.choice([0, 1, 1, 2, 3, 5])  # months in arrears
        paid_months = rng.randint(1, max(1, count - behind - 1))
        first_due = BASE_DATE - dt.timedelta(days=30 * (paid_months + behind - 1))
        schedule = []
        for i in range(count):
            due = first_due + dt.timedelta(days=30 * i)
            paid = installment if i < paid_months else 0
            if i == paid_months and rng.random() < 0.3:
                paid = installment // 2  # a partly paid installment
            schedule.append(
                {
                    "no": i + 1,
                    "due": due.isoformat(),
                    "amount": installment,
                    "paid": paid,
                }
            )
        doc["contracts"].append(
            {
                "id": kid,
                "customer": cid,
                "currency": "IDR",
                "installments": schedule,
                "product": rng.choice(["motorcycle", "phone", "fridge", "car"]),
            }
        )
        doc["assignments"].append(
            {
                "id": f"A-{n + 1:03d}",
                "contract": kid,
                "collector": "c1" if n % 3 else "c2",
                "date": BASE_DATE.isoformat(),
                "priority": 1 + (n * 7) % customers,
            }
        )
        if n % 10 != 9:
            stops.append((lat, lon))

    # The drive: along the route, stopping a minute at every second customer.
    waypoints = [(ROUTE[0][0], ROUTE[0][1], 5.0)]
    for index, (lat, lon) in enumerate(stops):
        waypoints.append((lat, lon, 60.0 if index % 2 == 0 else 0.0))
    waypoints.append((ROUTE[-1][0], ROUTE[-1][1], 5.0))
    start = dt.datetime(2026, 12, 1, 1, 0, tzinfo=dt.UTC)
    lines = [
        "# Demo drive: a collector's round through central Bandung.",
        "# Made by python -m kiosk.demo_data; fictional, 1 Hz, 3D fixes.",
    ]
    lines += list(drive(waypoints, start, speed_ms=9.0))
    return doc, lines


def main() -> None:
    doc, lines = build()
    (HERE / "assignments.json").write_text(
        json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
    )
    (HERE / "drive.nmea").write_text("\n".join(lines) + "\n", encoding="ascii")
    print(f"{len(doc['customers'])} customers, {len(lines)} NMEA lines")


if __name__ == "__main__":
    main()
