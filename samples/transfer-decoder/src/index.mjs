// transfer-decoder: the platform's typical UDF. It decodes ERC-20 Transfer logs with ethers v6
// and returns who sent what to whom. The logs come either in the event itself (`logs`) or from
// the task's input query `transfers`, which the runner ran before the invocation and put under
// `trace_inputs` (columns tx_hash, log_index, symbol, decimals, topics, data).
import { Interface, formatUnits } from "ethers";

const ERC20 = new Interface([
  "event Transfer(address indexed from, address indexed to, uint256 value)",
]);

export const handler = async (event) => {
  const logs = event.logs ?? rowsOf(event.trace_inputs?.queries?.transfers);
  const transfers = logs.map(decode);
  console.log(`decoded ${transfers.length} transfers`);
  return { count: transfers.length, transfers };
};

function rowsOf(result) {
  if (!result) {
    throw new TypeError("no logs: pass `logs` in the event or an input query `transfers`");
  }
  const names = result.columns.map((column) => column.name);
  return result.rows.map((row) => Object.fromEntries(names.map((name, i) => [name, row[i]])));
}

function decode(log) {
  const parsed = ERC20.parseLog({ topics: log.topics, data: log.data });
  if (parsed === null) {
    throw new TypeError(`log ${log.tx_hash ?? "?"}:${log.log_index ?? "?"} is not an ERC-20 Transfer`);
  }
  const { from, to, value } = parsed.args;
  return {
    tx_hash: log.tx_hash,
    token: log.symbol,
    from,
    to,
    value: value.toString(),
    amount: log.decimals === undefined ? undefined : formatUnits(value, log.decimals),
  };
}
