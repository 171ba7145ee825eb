"""The 17 Korean first-level regions (provinces and metropolitan cities) and their distances."""

from __future__ import annotations

import numpy as np
import pandas as pd

# name, latitude, longitude of the seat, population (millions, rounded; 2023 resident registration)
_REGIONS = [
    ("Seoul", 37.57, 126.98, 9.4),
    ("Busan", 35.18, 129.08, 3.3),
    ("Daegu", 35.87, 128.60, 2.4),
    ("Incheon", 37.46, 126.71, 3.0),
    ("Gwangju", 35.16, 126.85, 1.4),
    ("Daejeon", 36.35, 127.38, 1.4),
    ("Ulsan", 35.54, 129.31, 1.1),
    ("Sejong", 36.48, 127.29, 0.4),
    ("Gyeonggi", 37.27, 127.01, 13.6),
    ("Gangwon", 37.88, 127.73, 1.5),
    ("Chungbuk", 36.64, 127.49, 1.6),
    ("Chungnam", 36.66, 126.67, 2.1),
    ("Jeonbuk", 35.82, 127.15, 1.8),
    ("Jeonnam", 34.82, 126.46, 1.8),
    ("Gyeongbuk", 36.58, 128.50, 2.6),
    ("Gyeongnam", 35.24, 128.69, 3.3),
    ("Jeju", 33.50, 126.53, 0.7),
]


def regions_table() -> pd.DataFrame:
    """The regions as a table: region_id, name, lat, lon, population_m."""
    return pd.DataFrame(
        {
            "region_id": np.arange(len(_REGIONS), dtype=np.int32),
            "name": [r[0] for r in _REGIONS],
            "lat": [r[1] for r in _REGIONS],
            "lon": [r[2] for r in _REGIONS],
            "population_m": [r[3] for r in _REGIONS],
        }
    )


def distance_matrix_km(regions: pd.DataFrame) -> np.ndarray:
    """Great-circle distances (km) between region seats, shape (n, n), float32."""
    lat = np.radians(regions["lat"].to_numpy())
    lon = np.radians(regions["lon"].to_numpy())
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    a = np.sin(dlat / 2) ** 2 + np.cos(lat)[:, None] * np.cos(lat)[None, :] * np.sin(dlon / 2) ** 2
    return (2 * 6371.0 * np.arcsin(np.sqrt(a))).astype(np.float32)
