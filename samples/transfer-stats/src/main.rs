//! transfer-stats: a `provided.al2023` bootstrap on the official `lambda_runtime` crate. It reads
//! the rows of an input query over `erc20_transfers` that the runner ran for it (the event's
//! `trace_inputs.queries.<name>`, `transfers` unless the event's `query` names another), counts
//! per token with Polars the transfers, their total and largest value and the distinct senders,
//! writes that summary to `transfer-stats.json` under `TRACE_OUTPUT_PREFIX` with the task's
//! scoped credentials, and answers with it.
//!
//! Token amounts are DECIMAL(38,0), which the Query Service sends as decimal strings: they are
//! summed as 128-bit integers and answered as decimal strings again, so no digit is lost.

mod s3;

use lambda_runtime::{service_fn, Diagnostic, LambdaEvent};
use polars::prelude::*;
use serde_json::{json, Value};

const DEFAULT_QUERY: &str = "transfers";
const OUTPUT_NAME: &str = "transfer-stats.json";

/// Why an invocation failed; its name is the `errorType` the caller sees.
#[derive(Debug)]
enum Failure {
    InvalidInput(String),
    Aggregation(PolarsError),
    Output(String),
}

impl From<PolarsError> for Failure {
    fn from(error: PolarsError) -> Self {
        Failure::Aggregation(error)
    }
}

impl From<Failure> for Diagnostic {
    fn from(failure: Failure) -> Self {
        let (error_type, error_message) = match failure {
            Failure::InvalidInput(message) => ("InvalidInput", message),
            Failure::Aggregation(error) => ("AggregationFailed", error.to_string()),
            Failure::Output(message) => ("OutputFailed", message),
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message,
        }
    }
}

/// The columns the aggregation reads, one entry per transfer.
#[derive(Default)]
struct Transfers {
    token: Vec<String>,
    sender: Vec<String>,
    value: Vec<i128>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(service_fn(handle)).await
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Failure> {
    let query = event
        .payload
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_QUERY);
    let result = &event.payload["trace_inputs"]["queries"][query];
    let mut summary = json!({
        "query": query,
        "truncated": result["truncated"].as_bool().unwrap_or(false),
        "tokens": per_token(&transfers(query, result)?)?,
    });
    let body = serde_json::to_vec(&summary).expect("a JSON value serialises");
    // ureq blocks: the PUT runs off the runtime's thread.
    let output = tokio::task::spawn_blocking(move || s3::put_output(OUTPUT_NAME, &body))
        .await
        .map_err(|error| Failure::Output(error.to_string()))?
        .map_err(Failure::Output)?;
    summary["output"] = json!(output);
    Ok(summary)
}

/// The query result's `token`, `from` and `value` columns, checked.
fn transfers(query: &str, result: &Value) -> Result<Transfers, Failure> {
    let columns = result["columns"].as_array().ok_or_else(|| {
        invalid(format!(
            "the task has no input query named {query:?} (trace_inputs.queries)"
        ))
    })?;
    let position = |name: &str| {
        columns
            .iter()
            .position(|column| column["name"] == name)
            .ok_or_else(|| invalid(format!("input query {query:?} has no column {name:?}")))
    };
    let (token, sender, value) = (position("token")?, position("from")?, position("value")?);
    let mut out = Transfers::default();
    for row in result["rows"].as_array().into_iter().flatten() {
        out.token.push(text(&row[token], "token")?);
        out.sender.push(text(&row[sender], "from")?);
        out.value.push(amount(&row[value])?);
    }
    Ok(out)
}

fn text(value: &Value, column: &str) -> Result<String, Failure> {
    value
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| invalid(format!("{column} {value} is not a string")))
}

/// A DECIMAL(38,0) as the Query Service sends it (a decimal string), or a JSON integer.
fn amount(value: &Value) -> Result<i128, Failure> {
    let parsed = match value {
        Value::String(digits) => digits.parse().ok(),
        Value::Number(number) => number.as_i64().map(i128::from),
        _ => None,
    };
    parsed.ok_or_else(|| invalid(format!("value {value} is not an integer")))
}

fn invalid(message: String) -> Failure {
    Failure::InvalidInput(message)
}

/// One JSON object per token, in token order.
// Polars' eager group-by aggregations are deprecated in favour of its lazy API, which would add
// polars-lazy, -plan, -expr and -ops to the build: minutes more on a small machine.
#[allow(deprecated)]
fn per_token(transfers: &Transfers) -> Result<Vec<Value>, Failure> {
    let frame = DataFrame::new_infer_height(vec![
        Column::new("token".into(), &transfers.token),
        Column::new("from".into(), &transfers.sender),
        Column::new("value".into(), &transfers.value),
    ])?;
    // One grouping for every aggregation, so that their rows line up.
    let groups = frame.group_by(["token"])?;
    let values = groups.clone().select(["value"]);
    let mut columns = values.count()?.into_columns();
    columns.push(values.sum()?.column("value_sum")?.clone());
    columns.push(values.max()?.column("value_max")?.clone());
    columns.push(
        groups
            .select(["from"])
            .n_unique()?
            .column("from_n_unique")?
            .clone(),
    );
    let stats =
        DataFrame::new_infer_height(columns)?.sort(["token"], SortMultipleOptions::default())?;
    rows(&stats)
}

fn rows(stats: &DataFrame) -> Result<Vec<Value>, Failure> {
    let count = stats.column("value_count")?.idx()?;
    let total = stats.column("value_sum")?.i128()?;
    let largest = stats.column("value_max")?.i128()?;
    let senders = stats.column("from_n_unique")?.idx()?;
    let tokens = stats.column("token")?.str()?;
    Ok((0..stats.height())
        .map(|row| {
            json!({
                "token": tokens.get(row),
                "transfers": count.get(row),
                "total_value": total.get(row).map(|sum| sum.to_string()),
                "largest_value": largest.get(row).map(|max| max.to_string()),
                "distinct_senders": senders.get(row),
            })
        })
        .collect())
}
