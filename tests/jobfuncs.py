"""Job functions for tests: RQ workers import them as tests.jobfuncs.*."""
import time


def record(label: str) -> dict:
    return {"label": label, "at": time.time()}


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds
