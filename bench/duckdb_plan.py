#!/usr/bin/env python3
"""Runs bench/duckdb_plan.sql, the day-one plan as one DuckDB query, on a
generated relance folder: the yardstick bench/run.sh times relance against.

    python3 bench/duckdb_plan.py FOLDER [AS_OF] > plan.json
"""
import os
import sys

import duckdb

folder = sys.argv[1]
as_of = sys.argv[2] if len(sys.argv) > 2 else "2026-12-01"
query = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "duckdb_plan.sql")).read()
os.chdir(folder)  # the query names the feeds as relance.yaml does, relative to the folder
con = duckdb.connect()
con.execute("SET VARIABLE as_of = ?::DATE", [as_of])
con.execute(query)
