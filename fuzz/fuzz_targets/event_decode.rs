//! Fuzzes the event decoder: any bytes must decode or give an error, never a
//! panic; a decoded event must encode and decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vibemon_schemas::DeploymentReported;

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = DeploymentReported::decode(data) {
        let again = DeploymentReported::decode(&event.encode()).expect("what we encode decodes");
        assert_eq!(again, event);
    }
});
