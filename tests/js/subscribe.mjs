// SubscribeToShard with the AWS SDK for JavaScript v3 and its default request handler, which
// speaks HTTP/2 (prior knowledge on http:// endpoints). Prints one JSON summary line.
//   node subscribe.mjs ENDPOINT STREAM_NAME
import {
  KinesisClient,
  PutRecordCommand,
  RegisterStreamConsumerCommand,
  DescribeStreamConsumerCommand,
  DescribeStreamSummaryCommand,
  SubscribeToShardCommand,
} from "@aws-sdk/client-kinesis";

const [endpoint, stream] = process.argv.slice(2);
const client = new KinesisClient({
  endpoint,
  region: "us-east-1",
  // The suite's key (the environment's, as the test sets it).
  credentials: { accessKeyId: process.env.AWS_ACCESS_KEY_ID, secretAccessKey: process.env.AWS_SECRET_ACCESS_KEY },
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const summary = await client.send(new DescribeStreamSummaryCommand({ StreamName: stream }));
const streamArn = summary.StreamDescriptionSummary.StreamARN;
const reg = await client.send(new RegisterStreamConsumerCommand({ StreamARN: streamArn, ConsumerName: "js" }));
const consumerArn = reg.Consumer.ConsumerARN;
for (let i = 0; i < 200; i++) {
  const d = await client.send(new DescribeStreamConsumerCommand({ ConsumerARN: consumerArn }));
  if (d.ConsumerDescription.ConsumerStatus === "ACTIVE") break;
  await sleep(20);
}
for (let i = 0; i < 3; i++) {
  await client.send(new PutRecordCommand({ StreamName: stream, PartitionKey: "k", Data: Buffer.from(`before-${i}`) }));
}
const sub = await client.send(
  new SubscribeToShardCommand({
    ConsumerARN: consumerArn,
    ShardId: "shardId-000000000000",
    StartingPosition: { Type: "TRIM_HORIZON" },
  }),
);
setTimeout(async () => {
  for (let i = 0; i < 3; i++) {
    await client.send(new PutRecordCommand({ StreamName: stream, PartitionKey: "k", Data: Buffer.from(`after-${i}`) }));
  }
}, 300);
const data = [];
let continuation = null;
const deadline = Date.now() + 20000;
for await (const event of sub.EventStream) {
  if (event.SubscribeToShardEvent) {
    for (const r of event.SubscribeToShardEvent.Records) data.push(Buffer.from(r.Data).toString());
    continuation = event.SubscribeToShardEvent.ContinuationSequenceNumber;
  } else {
    console.log(JSON.stringify({ error: Object.keys(event) }));
    process.exit(1);
  }
  if (data.length >= 6 || Date.now() > deadline) break;
}
// Which protocol did the SDK use? Its default Node handler is HTTP/2.
console.log(JSON.stringify({ data, continuation, handler: client.config.requestHandler.constructor.name }));
process.exit(0);
