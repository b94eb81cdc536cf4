#![no_main]
//! The policy evaluator never panics on any policy document, action, resource or account a
//! client or a configuration can give.
//! Input lines: `<principal account>\n<action>\n<resource>\n<policy JSON>`.
use libfuzzer_sys::fuzz_target;
use sluice::http::iam::{authorize, evaluate, glob_matches, Principal, Request};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(4, '\n');
    let mut next = || lines.next().unwrap_or("");
    let (account, action, resource, policy) = (next(), next(), next(), next());
    let req = Request {
        principal: Principal { account, arn: "arn:aws:iam::210987654321:user/fuzz" },
        action,
        resource,
        resource_account: "000000000000",
    };
    let _ = glob_matches(action, resource, true);
    if let Ok(policy) = serde_json::from_str::<serde_json::Value>(policy) {
        let _ = evaluate(&policy, &req);
        let _ = authorize(account.len() % 2 == 0, Some(&policy), &req);
    }
});
