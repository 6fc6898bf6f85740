//! Fuzzes the webhook body validator: any bytes must give a request or a
//! list of issues, never a panic; an accepted request must hold only values
//! that pass the field rules again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let now = chrono::DateTime::from_timestamp(1_705_314_600, 0).unwrap();
    match vibemon_ingest::request::parse(data, now, chrono::Duration::minutes(5), 2) {
        Ok(r) => {
            assert!(vibemon_schemas::EnvironmentName::parse(r.environment.as_str()).is_ok());
            assert!(vibemon_schemas::RepoFullName::parse(r.repository.as_str()).is_ok());
            if let Some(sha) = &r.commit_sha {
                assert_eq!(sha.as_str().len(), 40);
            }
        }
        Err(issues) => assert!(!issues.is_empty()),
    }
});
