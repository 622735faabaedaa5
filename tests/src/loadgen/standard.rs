//! The standard workload, the same on Veldwerk and on its CouchDB-protocol peer
//! ([`super::couch`]), so that their figures can stand side by side: participants' phones
//! upload interviews in batches, a trainer downloads the cohort for the first time, a participant
//! downloads their own part, an up-to-date participant pulls again and again (quiet, then while
//! another participant writes every 20 ms), first with [`Sizes::standard_stored`]'s first size
//! stored and then with its second, and finally a trainer downloads everything in pages of the
//! largest size. The server's peak memory (`VmHWM`) is read after the first part and at the end.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::Change;

use super::{
    Api, BackgroundWriter, Goal, Measurement, Sizes, Target, check_converged, fleet, measured,
    median, notes, pull_page, staff, text, up_to_date_pulls,
};
use crate::client::Device;

/// The scenario's name in tables.
pub const SCENARIO: &str = "standard";

/// The standard record: an interview with nine fields, `notes_bytes` of notes and a fifth of that
/// of insights (about 2.8 KB of JSON at 2,000 bytes of notes).
pub fn interview_fields(notes_bytes: usize, seed: u64) -> Value {
    json!({
        "interviewee_role": "buurtwerker",
        "interviewee_organisation": "Stichting Welzijn Noord",
        "interviewee_name": format!("Bewoner {seed}"),
        "name_consent": true,
        "interviewed_on": "2026-11-12",
        "place": "Wijkcentrum De Boog",
        "notes": notes(notes_bytes, seed),
        "insights": notes(notes_bytes / 5, seed ^ 0x5eed),
        "status": "done",
    })
}

/// The figures' names, shared by both systems so that the tables can pair them.
pub mod metric {
    pub const UPLOAD: &str = "upload, records/s";
    pub const FIRST_DOWNLOAD: &str = "first download (trainer), records/s";
    pub const SCOPED_DOWNLOAD: &str = "scoped download (one participant), ms";
    pub const SERVER_CPU_PER_RECORD: &str = "server CPU per record, first download, us";
    pub const PEAK_AFTER_WORKLOAD: &str = "VmHWM after upload, downloads and idle pulls, MiB";
    pub const PEAK_AT_END: &str = "VmHWM after the largest pages, MiB";
    pub const LARGEST_PAGES: &str = "trainer download in the largest pages, records/s";

    pub fn pull_p99(stored: usize, busy: bool) -> String {
        let busy = if busy { ", another writing" } else { "" };
        format!("up-to-date pull p99 at {stored} records{busy}, ms")
    }
}

/// The server's peak memory so far, against its goal (150 MiB at the end, 100 before).
pub fn peak(target: &Target, name: &str) -> Option<Measurement> {
    let goal = if name == metric::PEAK_AT_END {
        150.0
    } else {
        100.0
    };
    target
        .peak_rss_mb()
        .map(|mb| measured(SCENARIO, name, mb, "MiB", Goal::AtMost(goal)))
}

/// p99 of a list of latencies in ms.
pub fn p99(mut latencies: Vec<f64>) -> f64 {
    latencies.sort_by(f64::total_cmp);
    latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)]
}

/// The standard workload on Veldwerk.
pub async fn run(target: &Target, sizes: &Sizes) -> anyhow::Result<Vec<Measurement>> {
    let api = Api::new(&target.address);
    let staff = staff(&api).await?;
    let mut devices = fleet(
        &api,
        &staff,
        1,
        sizes.standard_devices + 1,
        sizes.setup_concurrency,
    )
    .await?;
    let (mut writer, cohort) = devices.pop().context("a writer")?;
    let mut written = Vec::new();
    for (index, (device, cohort)) in devices.iter_mut().enumerate() {
        device.batch_size = sizes.batch;
        let mut own = Vec::new();
        for n in 0..sizes.standard_records {
            let id = Uuid::now_v7();
            let seed = (index * sizes.standard_records + n) as u64;
            let fields = interview_fields(sizes.record_bytes, seed);
            own.push((id, fields["notes"].as_str().unwrap_or_default().to_owned()));
            device.write("interviews", id, Some(*cohort), fields);
        }
        written.push(own);
    }
    let mut results = Vec::new();

    // Upload: every phone at once, in batches.
    let total = sizes.standard_devices * sizes.standard_records;
    let started = Instant::now();
    let pushed: Vec<anyhow::Result<()>> = stream::iter(devices.iter_mut())
        .map(|(device, _)| device.push())
        .buffer_unordered(sizes.standard_devices)
        .collect()
        .await;
    let elapsed = started.elapsed();
    for result in pushed {
        result?;
    }
    results.push(measured(
        SCENARIO,
        metric::UPLOAD,
        total as f64 / elapsed.as_secs_f64(),
        "/s",
        Goal::AtLeast(20_000.0),
    ));

    // The trainer's first download, in pages of 1,000.
    let http = reqwest::Client::new();
    let trainer = text(&staff.trainer_session, "/access_token")?;
    let cpu_before = target.cpu_seconds();
    let (records, interviews, elapsed) =
        download(&http, &target.address, &trainer, cohort, 1_000).await?;
    ensure!(
        interviews == total,
        "the trainer received {interviews} interviews of {total}"
    );
    results.push(measured(
        SCENARIO,
        metric::FIRST_DOWNLOAD,
        records as f64 / elapsed.as_secs_f64(),
        "/s",
        Goal::AtLeast(100_000.0),
    ));
    if let (Some(before), Some(after)) = (cpu_before, target.cpu_seconds()) {
        results.push(measured(
            SCENARIO,
            metric::SERVER_CPU_PER_RECORD,
            (after - before) * 1e6 / records as f64,
            "us",
            Goal::None,
        ));
    }

    // One participant's own interviews.
    let participant = devices[0].0.debug_token().to_owned();
    let (_, interviews, elapsed) =
        download(&http, &target.address, &participant, cohort, 1_000).await?;
    ensure!(
        interviews == sizes.standard_records,
        "the participant received {interviews} interviews of {}",
        sizes.standard_records
    );
    results.push(measured(
        SCENARIO,
        metric::SCOPED_DOWNLOAD,
        elapsed.as_secs_f64() * 1000.0,
        "ms",
        Goal::None,
    ));
    check_converged(&mut devices[0].0, &written[0]).await?;

    // Up-to-date pulls, quiet and busy, at each stored size.
    let mut stored = total;
    for (step, &goal) in sizes.standard_stored.iter().enumerate() {
        while stored < goal {
            let each = ((goal - stored) / devices.len()).clamp(1, 2_000);
            for (index, (device, cohort)) in devices.iter_mut().enumerate() {
                let count = each.min(goal - stored);
                for n in 0..count {
                    let seed = (stored + index * each + n) as u64;
                    let fields = interview_fields(sizes.record_bytes, seed);
                    device.write("interviews", Uuid::now_v7(), Some(*cohort), fields);
                }
                device.batch_size = 250;
                stored += count;
            }
            let pushed: Vec<anyhow::Result<()>> = stream::iter(devices.iter_mut())
                .map(|(device, _)| device.push())
                .buffer_unordered(4)
                .collect()
                .await;
            for result in pushed {
                result?;
            }
        }
        let device = &mut devices[0].0;
        device.pull().await?;
        for busy in [false, true] {
            let background = busy.then(|| {
                let placeholder = Device::with_client(http.clone(), &target.address, &Value::Null);
                BackgroundWriter::start(std::mem::replace(&mut writer, placeholder), cohort)
            });
            let latencies =
                up_to_date_pulls(&http, &target.address, device, sizes.standard_pulls, 1_000)
                    .await?;
            if let Some(background) = background {
                let (returned, written) = background.stop().await?;
                stored += written as usize;
                writer = returned;
            }
            results.push(measured(
                SCENARIO,
                metric::pull_p99(goal, busy),
                p99(latencies),
                "ms",
                Goal::AtMost(2.0),
            ));
        }
        if step == 0 {
            results.extend(peak(target, metric::PEAK_AFTER_WORKLOAD));
        }
    }

    // The trainer again, from nothing, in the largest pages the server allows.
    let (records, interviews, elapsed) = download(
        &http,
        &target.address,
        &trainer,
        cohort,
        sizes.standard_largest_page,
    )
    .await?;
    ensure!(
        interviews == stored,
        "the trainer received {interviews} interviews of {stored}"
    );
    results.push(measured(
        SCENARIO,
        metric::LARGEST_PAGES,
        records as f64 / elapsed.as_secs_f64(),
        "/s",
        Goal::None,
    ));
    results.extend(peak(target, metric::PEAK_AT_END));
    Ok(results)
}

/// Pulls from no cursor in pages of `limit`: all records received, the cohort's interviews among
/// them, and the time it took. Each page is parsed into the protocol's types, as a client does.
async fn download(
    http: &reqwest::Client,
    address: &str,
    token: &str,
    cohort: Uuid,
    limit: usize,
) -> anyhow::Result<(usize, usize, Duration)> {
    let started = Instant::now();
    let mut cursor: Option<String> = None;
    let (mut records, mut interviews) = (0, 0);
    loop {
        let page = pull_page(http, address, token, cursor.as_deref(), limit).await?;
        for change in &page.changes {
            if let Change::Put(record) = change {
                records += 1;
                if record.collection == "interviews" && record.cohort_id == Some(cohort) {
                    interviews += 1;
                }
            }
        }
        cursor = Some(page.cursor);
        if !page.has_more {
            return Ok((records, interviews, started.elapsed()));
        }
    }
}

/// The median of each figure over runs, by name.
pub fn medians(runs: &[Measurement], name: &str) -> Option<f64> {
    let mut values: Vec<f64> = runs
        .iter()
        .filter(|m| m.metric == name)
        .map(|m| m.value)
        .collect();
    (!values.is_empty()).then(|| median(&mut values))
}
