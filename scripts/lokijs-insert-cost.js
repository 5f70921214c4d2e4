// Measures what an insert and an update cost in a LokiJS collection as it grows, with the
// collection options Azurite (the Table Storage emulator the tests and benchmarks use) gives
// each table: binary indexes on PartitionKey and RowKey, kept sorted on every insert. It shows
// how much of the sync benchmark's per-user time at a million users is the emulator's (README,
// "Benchmarks"). Run after npm ci: node scripts/lokijs-insert-cost.js [rows, default 1000000]
"use strict";
const path = require("path");
const loki = require(path.join(__dirname, "..", "node_modules", "lokijs"));

const rows = Number(process.argv[2] || 1000000);
const step = Math.max(1, Math.floor(rows / 10));
const coll = new loki("cost", {}).addCollection("t", { indices: ["PartitionKey", "RowKey"] });
// Keys in pseudo-random order, as object ids arrive.
const key = (i) => "u" + ((i * 2654435761) % 4294967296).toString(16).padStart(8, "0");

let t0 = Date.now();
for (let i = 0; i < rows; i++) {
  const rk = key(i);
  if (!coll.findOne({ RowKey: rk, PartitionKey: "org" })) {
    coll.insert({ PartitionKey: "org", RowKey: rk, properties: { n: i } });
  }
  if ((i + 1) % step === 0) {
    const t = Date.now();
    console.log(`rows ${i + 1}: ${((t - t0) / step).toFixed(3)} ms an insert over the last ${step}`);
    t0 = t;
  }
}
// A point read (GET of one entity), and a replace or merge as Azurite's updateTableEntity and
// mergeTableEntity do it: find the entity, remove it, insert its new version. The removal finds
// the row's position in each sorted index and shifts the rest, so it costs in proportion to the
// table's size too.
const samples = 2000;
t0 = Date.now();
for (let i = 0; i < samples; i++) {
  coll.findOne({ RowKey: key(i * 7), PartitionKey: "org" });
}
console.log(`rows ${coll.count()}: ${((Date.now() - t0) / samples).toFixed(3)} ms a point read`);
t0 = Date.now();
for (let i = 0; i < samples; i++) {
  const doc = coll.findOne({ RowKey: key(i * 13), PartitionKey: "org" });
  coll.remove(doc);
  coll.insert({ PartitionKey: "org", RowKey: doc.RowKey, properties: { n: -i } });
}
console.log(`rows ${coll.count()}: ${((Date.now() - t0) / samples).toFixed(3)} ms a replace (remove, then insert)`);
