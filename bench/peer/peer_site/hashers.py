"""Django's Argon2id hasher with Caregate's default parameters (OWASP minimum)."""

import os

from django.contrib.auth.hashers import Argon2PasswordHasher


class BenchArgon2PasswordHasher(Argon2PasswordHasher):
    memory_cost = int(os.environ.get("PEER_ARGON2_MEMORY_KIB", "19456"))
    time_cost = int(os.environ.get("PEER_ARGON2_TIME_COST", "2"))
    parallelism = int(os.environ.get("PEER_ARGON2_PARALLELISM", "1"))
