"""Times the reference library (lifetimes) on a transactions CSV: the summary, the BG/NBD fit
and the Gamma-Gamma fit, each REPEAT times (default 3, as examples/summary_from_csv.rs times
rebuy), and prints one JSON object with the medians and the single runs.
Usage: python lifetimes_reference.py TRANSACTIONS.csv END_DATE"""
import json, os, resource, statistics, sys, time
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

path, end = sys.argv[1], sys.argv[2]
repeat = max(1, int(os.environ.get("REPEAT", "3")))
out = {}
t = time.perf_counter()
df = pd.read_csv(path, dtype={"customer_id": str, "date": str, "amount": float})
out["read_csv_secs"] = time.perf_counter() - t


def timed(name, step):
    runs, result = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        result = step()
        runs.append(time.perf_counter() - t)
    out[f"{name}_secs"] = statistics.median(runs)
    out[f"{name}_runs"] = runs
    return result


s = timed("summary", lambda: summary_data_from_transaction_data(
    df, "customer_id", "date", monetary_value_col="amount", observation_period_end=end, freq="D"))
bgf = timed("bgnbd_fit", lambda: BetaGeoFitter(penalizer_coef=0.0).fit(
    s["frequency"], s["recency"], s["T"]))
out["bgnbd"] = {k: float(v) for k, v in bgf.params_.items()}
rep = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
ggf = timed("gamma_gamma_fit", lambda: GammaGammaFitter(penalizer_coef=0.0).fit(
    rep["frequency"], rep["monetary_value"]))
out["gamma_gamma"] = {k: float(v) for k, v in ggf.params_.items()}
out["customers"] = int(len(s))
out["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out, indent=2))
