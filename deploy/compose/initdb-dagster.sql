-- Run once by the timescale/timescaledb image on a fresh volume (docker-entrypoint-initdb.d).
create database dagster owner pulse;
