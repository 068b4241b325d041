//! The `noop` kind: does nothing but report progress, for tests and the queue benchmark.
//! Payload: `{"steps": n, "sleep_ms": ms, "fail": bool}` (all optional).

use super::{Job, JobContext, JobError, JobRunner};

pub struct NoopRunner;

impl JobRunner for NoopRunner {
    fn kind(&self) -> &'static str {
        "noop"
    }

    fn run(&mut self, job: &Job, ctx: &mut JobContext) -> Result<(), JobError> {
        let steps = job.payload["steps"].as_u64().unwrap_or(0) as usize;
        let sleep = std::time::Duration::from_millis(job.payload["sleep_ms"].as_u64().unwrap_or(0));
        for i in 0..steps {
            std::thread::sleep(sleep);
            ctx.progress(i + 1, steps, "noop step")?;
        }
        if job.payload["fail"].as_bool().unwrap_or(false) {
            return Err(JobError::Failed("noop job asked to fail".into()));
        }
        Ok(())
    }
}
