#![no_main]
//! KPL de-aggregation never panics and never loses bytes: whatever the data, it yields user
//! records, and data that is not a well-formed aggregate comes back whole as one record.
use libfuzzer_sys::fuzz_target;
use sluice::kcl::kpl::deaggregate;

fuzz_target!(|data: &[u8]| {
    let out = deaggregate("k", data, Some((0, u128::MAX / 2)));
    if out.first().is_some_and(|r| !r.aggregated) {
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data, data);
    }
});
