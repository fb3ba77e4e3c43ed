"""The local platform: the `udf-runner` command, and services that behave like the real ones.

Start here: `stack.LocalStack` (everything, in process) and `stack.run_foreground`
(`udf-runner devstack`); `access.StackAccess` reaches a running stack. The services are
`minter`, `query_service` and `issuer_service` (HTTP contracts in `contracts/`), on `_http`;
tokens are `claims` + `tokens`; S3 scoping is `s3_uri`, `scope_policy`, `iam_eval` and the
moto process (`s3_server`, `_moto_server`); SQL is `sql_sandbox`, `sql_values`, `datasets`.

Nothing is imported here: `udf-runner invoke` must not pay for DuckDB and moto unless it
starts a stack.
"""
