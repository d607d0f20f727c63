#!/usr/bin/env bash
# Runs every test from a fresh clone: prerequisites, restore, build, test.
# Ends with a plain 'N passed, N failed' line; exits non-zero when anything fails.
set -uo pipefail
cd "$(dirname "$0")/.."
bash eng/prereqs.sh || exit 1
# A private PostgreSQL server for the sweep-storage tests (installed when missing as root); stopped on exit.
if [ -z "${PEFT_TEST_POSTGRES:-}" ]; then
  pg_env=$(bash eng/postgres.sh start) && eval "$pg_env"
  trap 'bash eng/postgres.sh stop' EXIT
fi
dotnet build PeftTrainers.sln -c Release 2>&1 | tail -n 3
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }
results=artifacts/test-results
rm -rf "$results"
dotnet test PeftTrainers.sln -c Release --no-build --results-directory "$results" --logger "trx" --logger "console;verbosity=normal" "$@"
status=$?
passed=0; failed=0
for trx in "$results"/*.trx; do
  [ -e "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -n 1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters"); f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
done
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
echo "$passed passed, $failed failed"
exit $status
