"""Class names and label -> family maps of every data set (facts from docs/DATASETS.md).

Class indices stored in the Zarr ``y`` array are positions in the ``*_CLASSES`` lists below;
family indices in ``family`` are positions in the ``*_FAMILY_NAMES`` lists. Both lists are
fixed, so indices are stable across versions and across files that hold only some labels.
"""

from __future__ import annotations

MNIST_CLASSES: list[str] = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES: list[str] = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
EMNIST_LETTERS_CLASSES: list[str] = [chr(ord("a") + i) for i in range(26)]  # raw labels 1..26

NSL_KDD_FAMILIES: dict[str, list[str]] = {
    "normal": ["normal"],
    "DoS": ["back", "land", "neptune", "pod", "smurf", "teardrop", "mailbomb", "apache2",
            "processtable", "udpstorm"],
    "Probe": ["ipsweep", "nmap", "portsweep", "satan", "mscan", "saint"],
    "R2L": ["ftp_write", "guess_passwd", "imap", "multihop", "phf", "spy", "warezclient",
            "warezmaster", "sendmail", "named", "snmpgetattack", "snmpguess", "xlock", "xsnoop",
            "worm"],
    "U2R": ["buffer_overflow", "loadmodule", "perl", "rootkit", "httptunnel", "ps", "sqlattack",
            "xterm"],
}  # fmt: skip
NSL_KDD_FAMILY_NAMES: list[str] = list(NSL_KDD_FAMILIES)
NSL_KDD_CLASSES: list[str] = [name for names in NSL_KDD_FAMILIES.values() for name in names]

CICIDS2018_FAMILIES: dict[str, list[str]] = {
    "normal": ["Benign"],
    "BruteForce": ["FTP-BruteForce", "SSH-Bruteforce"],
    "DoS": ["DoS attacks-GoldenEye", "DoS attacks-Slowloris", "DoS attacks-SlowHTTPTest",
            "DoS attacks-Hulk"],
    "WebAttacks": ["Brute Force -Web", "Brute Force -XSS", "SQL Injection"],
    "Infiltration": ["Infilteration"],
    "Bot": ["Bot"],
    "DDoS": ["DDoS attacks-LOIC-HTTP", "DDOS attack-LOIC-UDP", "DDOS attack-HOIC"],
}  # fmt: skip
CICIDS2018_FAMILY_NAMES: list[str] = list(CICIDS2018_FAMILIES)
CICIDS2018_CLASSES: list[str] = [name for names in CICIDS2018_FAMILIES.values() for name in names]

CREDITCARD_CLASSES: list[str] = ["normal", "fraud"]
CREDITCARD_FAMILY_NAMES: list[str] = ["normal", "fraud"]


def family_index_of_classes(
    classes: list[str], families: dict[str, list[str]]
) -> list[int]:
    """For each class name, the index of its family in ``list(families)``."""
    names = list(families)
    out = []
    for c in classes:
        fam = [i for i, f in enumerate(names) if c in families[f]]
        if len(fam) != 1:
            raise KeyError(f"class {c!r} has {len(fam)} families")
        out.append(fam[0])
    return out


LABEL_SETS: dict[str, dict[str, object]] = {
    "mnist": {"classes": MNIST_CLASSES, "families": None},
    "fashion-mnist": {"classes": FASHION_MNIST_CLASSES, "families": None},
    "emnist-letters": {"classes": EMNIST_LETTERS_CLASSES, "families": None},
    "nsl-kdd": {"classes": NSL_KDD_CLASSES, "families": NSL_KDD_FAMILIES},
    "cicids2018": {"classes": CICIDS2018_CLASSES, "families": CICIDS2018_FAMILIES},
    "creditcard": {
        "classes": CREDITCARD_CLASSES,
        "families": {"normal": ["normal"], "fraud": ["fraud"]},
    },
}
