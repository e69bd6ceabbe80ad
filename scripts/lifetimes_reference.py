"""Times the reference library (lifetimes) on a transactions CSV: the summary, the BG/NBD fit
and the Gamma-Gamma fit, and prints one JSON object. Usage: python lifetimes_reference.py
TRANSACTIONS.csv END_DATE"""
import json, resource, sys, time
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data

path, end = sys.argv[1], sys.argv[2]
out = {}
t = time.perf_counter()
df = pd.read_csv(path, dtype={"customer_id": str, "date": str, "amount": float})
out["read_csv_secs"] = time.perf_counter() - t
t = time.perf_counter()
s = summary_data_from_transaction_data(df, "customer_id", "date", monetary_value_col="amount",
                                       observation_period_end=end, freq="D")
out["summary_secs"] = time.perf_counter() - t
t = time.perf_counter()
bgf = BetaGeoFitter(penalizer_coef=0.0).fit(s["frequency"], s["recency"], s["T"])
out["bgnbd_fit_secs"] = time.perf_counter() - t
out["bgnbd"] = {k: float(v) for k, v in bgf.params_.items()}
rep = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
t = time.perf_counter()
ggf = GammaGammaFitter(penalizer_coef=0.0).fit(rep["frequency"], rep["monetary_value"])
out["gamma_gamma_fit_secs"] = time.perf_counter() - t
out["gamma_gamma"] = {k: float(v) for k, v in ggf.params_.items()}
out["customers"] = int(len(s))
out["peak_memory_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out, indent=2))
