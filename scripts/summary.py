"""Counts test results from a scripts/check build and prints one line.

Failing tests are named with the end of their message.
Unit tests: the ":test-result:" lines of each cmocka program's .trs file
(one per test case).  Integration tests: pytest's junit XML (one per test).
Fuzz runs: fuzz-results.txt.  The last line is "N passed, N failed".
"""
import glob
import os
import sys
import xml.etree.ElementTree as ET

build = sys.argv[1]
passed = failed = skipped = 0

for trs in glob.glob(os.path.join(build, "asan", "tests", "unit", "*.trs")):
    with open(trs) as f:
        for line in f:
            if line.startswith(":test-result:"):
                r = line.split()[1]
                if r in ("PASS", "XFAIL"):
                    passed += 1
                elif r == "SKIP":
                    skipped += 1
                else:
                    failed += 1

integ = os.path.join(build, "asan", "tests", "integration")
junit = os.path.join(integ, "junit.xml")
if os.path.exists(junit):
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    for s in suites:
        for case in s.iter("testcase"):
            for bad in list(case.findall("failure")) + list(case.findall("error")):
                name = f'{case.get("classname")}::{case.get("name")}'
                print(f"FAILED {name}")
                text = (bad.get("message") or "") + "\n" + (bad.text or "")
                for ln in text.strip().splitlines()[-25:]:
                    print(f"    {ln}")
        total = int(s.get("tests", 0))
        bad = int(s.get("failures", 0)) + int(s.get("errors", 0))
        skip = int(s.get("skipped", 0))
        failed += bad
        skipped += skip
        passed += total - bad - skip
elif os.path.exists(os.path.join(integ, "run.trs")):
    failed += 1  # the runner failed before writing any result
else:
    failed += 1  # the integration tests did not run at all
    print("integration tests did not run")

fuzz = os.path.join(build, "fuzz", "fuzz-results.txt")
if os.path.exists(fuzz):
    with open(fuzz) as f:
        for line in f:
            if line.startswith("PASS:"):
                passed += 1
            elif line.startswith("FAIL:"):
                failed += 1

line = f"{passed} passed, {failed} failed"
if skipped:
    line += f", {skipped} skipped"
print(line)
sys.exit(1 if failed or passed == 0 else 0)
