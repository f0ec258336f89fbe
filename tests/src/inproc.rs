//! Masters and workers run as tasks inside the test process, for scenarios where no process
//! has to die. [`Task::crash`] aborts one without any goodbye (no lease release, no final
//! report), which is what a crash looks like to the others; [`Task::stop`] is a clean stop.

use jetwork_master::MasterSettings;
use jetwork_worker::{Handler, WorkerSettings};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A component running in this process.
pub struct Task {
    name: String,
    handle: JoinHandle<()>,
    stop: Option<oneshot::Sender<()>>,
}

impl Task {
    /// Aborts it on the spot.
    pub fn crash(mut self) {
        self.stop.take();
        self.handle.abort();
    }

    /// Asks it to stop and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let handle = &mut self.handle;
        let _ = handle.await;
    }

    /// Whether it has ended.
    pub fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// Runs a master candidate.
pub fn spawn_master(name: &str, settings: MasterSettings) -> Task {
    spawn_master_with(name, settings, None)
}

/// Runs a master candidate serving metrics and probes on `listener`.
pub fn spawn_master_with(
    name: &str,
    mut settings: MasterSettings,
    listener: Option<tokio::net::TcpListener>,
) -> Task {
    settings.master.id = name.to_owned();
    let (stop, stopped) = oneshot::channel::<()>();
    let task_name = name.to_owned();
    let handle = tokio::spawn(async move {
        if let Err(e) = jetwork_master::run_with_listener(settings, listener, async move {
            let _ = stopped.await;
        })
        .await
        {
            tracing::error!(master = %task_name, error = %e, "master ended with an error");
        }
    });
    Task { name: name.to_owned(), handle, stop: Some(stop) }
}

/// Runs a worker with `handler`.
pub fn spawn_worker<H: Handler>(name: &str, settings: WorkerSettings, handler: H) -> Task {
    spawn_worker_with(name, settings, handler, None)
}

/// Runs a worker with `handler`, serving metrics and probes on `listener`.
pub fn spawn_worker_with<H: Handler>(
    name: &str,
    mut settings: WorkerSettings,
    handler: H,
    listener: Option<tokio::net::TcpListener>,
) -> Task {
    settings.worker.id = Some(name.to_owned());
    let (stop, stopped) = oneshot::channel::<()>();
    let task_name = name.to_owned();
    let handle = tokio::spawn(async move {
        if let Err(e) = jetwork_worker::run_with_listener(settings, handler, listener, async move {
            let _ = stopped.await;
        })
        .await
        {
            tracing::error!(worker = %task_name, error = %e, "worker ended with an error");
        }
    });
    Task { name: name.to_owned(), handle, stop: Some(stop) }
}
