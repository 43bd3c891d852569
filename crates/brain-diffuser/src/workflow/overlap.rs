//! Reading ahead and writing behind a model: the image steps and `extract` run their model on the
//! calling thread (libtorch models are not shared across threads) while a reader thread prepares
//! the next job's inputs and a writer thread encodes and writes the previous job's outputs.

use std::sync::mpsc::sync_channel;

use super::WorkflowError;

/// Runs `work` on each of `jobs` in order on the calling thread, with `read` one job ahead on a
/// reader thread and `write` on each of `work`'s outputs on a writer thread (at most `depth`
/// outputs waiting). The first error of any of the three stops them all and is returned; outputs
/// handed to the writer before it are written.
pub(crate) fn overlapped<J: Sync, R: Send, O: Send>(
    jobs: &[J],
    depth: usize,
    read: &(dyn Fn(&J) -> Result<R, WorkflowError> + Sync),
    mut work: impl FnMut(&J, R) -> Result<Vec<O>, WorkflowError>,
    write: &(dyn Fn(O) -> Result<(), WorkflowError> + Sync),
) -> Result<(), WorkflowError> {
    std::thread::scope(|scope| {
        let (read_tx, read_rx) = sync_channel(1);
        let reader = scope.spawn(move || {
            for job in jobs {
                if read_tx.send(read(job)).is_err() {
                    break;
                }
            }
        });
        let (out_tx, out_rx) = sync_channel::<O>(depth.max(1));
        let writer = scope.spawn(move || out_rx.into_iter().try_for_each(write));
        let mut worked = Ok(());
        for job in jobs {
            let outputs = read_rx
                .recv()
                .map_err(|_| WorkflowError::Invalid("the reader thread stopped early".into()))
                .and_then(|input| work(job, input?));
            match outputs {
                // A send fails only when the writer stopped: its error is returned below.
                Ok(outputs) => {
                    if outputs.into_iter().try_for_each(|o| out_tx.send(o)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    worked = Err(e);
                    break;
                }
            }
        }
        drop(out_tx);
        drop(read_rx);
        let written = writer.join().map_err(|_| WorkflowError::Invalid("the writer thread panicked".into()))?;
        reader.join().map_err(|_| WorkflowError::Invalid("the reader thread panicked".into()))?;
        worked.and(written)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[test]
    fn every_output_is_written_in_order_and_the_first_error_stops_the_rest() {
        let jobs: Vec<u32> = (0..6).collect();
        let written = Mutex::new(Vec::new());
        let write = |o: u32| -> Result<(), WorkflowError> {
            written.lock().unwrap().push(o);
            Ok(())
        };
        overlapped(&jobs, 2, &|j: &u32| Ok(j * 10), |_, r| Ok(vec![r, r + 1]), &write).unwrap();
        assert_eq!(*written.lock().unwrap(), vec![0, 1, 10, 11, 20, 21, 30, 31, 40, 41, 50, 51]);

        // A read error at job 3: jobs 0..3 are written, nothing after.
        written.lock().unwrap().clear();
        let read = |j: &u32| match *j {
            3 => Err(WorkflowError::Invalid("unreadable job 3".into())),
            j => Ok(j),
        };
        let err = overlapped(&jobs, 1, &read, |_, r| Ok(vec![r]), &write).unwrap_err();
        assert!(err.to_string().contains("unreadable job 3"));
        assert_eq!(*written.lock().unwrap(), vec![0, 1, 2]);

        // A write error stops the work and is the one returned.
        let failing = |o: u32| match o {
            1 => Err(WorkflowError::Invalid("disk full at 1".into())),
            _ => Ok(()),
        };
        let mut worked = 0;
        let err = overlapped(
            &jobs,
            1,
            &|j: &u32| Ok(*j),
            |_, r| {
                worked += 1;
                Ok(vec![r])
            },
            &failing,
        )
        .unwrap_err();
        assert!(err.to_string().contains("disk full at 1"), "{err}");
        assert!(worked < jobs.len(), "the work went on after the writer failed");
    }
}
