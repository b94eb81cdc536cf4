// kinesalite on loopback only (its CLI has no host option). In memory, as it runs by default.
const port = Number(process.argv[2] || 4571);
require("kinesalite")({ createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 10000 })
  .listen(port, "127.0.0.1", (err) => {
    if (err) throw err;
    console.log(`kinesalite listening on 127.0.0.1:${port}`);
  });
