//! What a `Drop` of the test kit runs: deleting a test's database or topic.
//! A `Drop` may run inside a runtime or outside one, so the clean-up gets a
//! runtime and a thread of its own, and the drop waits for it.

/// Runs `cleanup` to the end on a runtime of its own, on a thread of its
/// own: what a `Drop` does, since it may run inside or outside a runtime.
pub(crate) fn on_own_thread<F>(cleanup: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime")
            .block_on(cleanup());
    })
    .join();
}
