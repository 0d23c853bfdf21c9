#!/usr/bin/env bash
# Writes the subset-scanning result CSVs of docs/results/ from the runs under a data root
# (read-only queries through actscan's DuckDB sandbox), and the two methods side by side
# (actscan show methods). Usage: docs/results/export.sh DATA_ROOT [A3_DATA_ROOT]
set -euo pipefail
root=${1:?data root}
a3root=${2:-$root}
cd "$(dirname "$0")/../.."
cols="dataset, protocol, autoencoder, attack, layer, detector, coalesce(score_fn, '') as score_fn, coalesce(tail, '') as tail, round(auroc, 4) as auroc, round(auroc_low, 4) as auroc_low, round(auroc_high, 4) as auroc_high, n_clean, n_noised"
.venv/bin/actscan query "select $cols from table1 order by dataset, protocol, autoencoder, attack, layer_index, detector, score_fn, tail" \
  --data-root "$root" --format csv --output docs/results/subset_scan_table1.csv
.venv/bin/actscan query "select $cols from table2 order by dataset, protocol, autoencoder, attack, detector, score_fn" \
  --data-root "$root" --format csv --output docs/results/subset_scan_table2.csv
.venv/bin/actscan query "select run_id, autoencoder, layer, attack, score_fn, proportion, n_sets, round(auroc, 4) as auroc, round(auroc_low, 4) as auroc_low, round(auroc_high, 4) as auroc_high, round(mean_score, 2) as mean_score, round(mean_precision, 3) as mean_precision from group_auroc order by run_id, layer, attack, proportion" \
  --data-root "$root" --format csv --output docs/results/subset_scan_group.csv
.venv/bin/actscan query "select run_id, dataset, protocol, autoencoder, attack, detector, round(auroc, 4) as auroc, round(auroc_low, 4) as auroc_low, round(auroc_high, 4) as auroc_high, round(ap, 4) as ap, n_clean, n_noised, round(fit_seconds, 1) as fit_seconds, round(train_loss, 6) as train_loss from a3_adversarial order by run_id, autoencoder, attack" \
  --data-root "$root" --format csv --output docs/results/a3_adversarial.csv
.venv/bin/actscan query "select run_id, attack, params, n_attempted, n_success, round(success_rate, 4) as success_rate, round(linf_mean, 4) as linf_mean, round(l2_mean, 4) as l2_mean from attacks order by run_id, attack" \
  --data-root "$root" --format csv --output docs/results/subset_scan_attacks.csv
.venv/bin/actscan show methods --data-root "$root" --a3-root "$a3root" --format csv > docs/results/methods_comparison.csv.tmp
mv docs/results/methods_comparison.csv.tmp docs/results/methods_comparison.csv
