//! The trainer console in a real browser (headless Chromium through ChromeDriver), against the
//! real server on SQLite and PostgreSQL: a trainer's Day 1 to Day 6 tasks as clicks and typing,
//! axe-core on every screen, and the session and CSRF rules tried from outside the browser.
//!
//! Without chromium and chromedriver the scenario says it was skipped; CI installs both and sets
//! `VELDWERK_TEST_BROWSER=required`. With `VELDWERK_CONSOLE_SCREENSHOTS=<folder>` it saves a PNG
//! of each main screen there (the README's pictures come from such a run).

use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_server::{jobs::push::run_once, service::demo};
use veldwerk_sync_protocol::schema::{cohort_record_id, linked_record_id};
use veldwerk_tests::{
    TestApp,
    browser::{Browser, axe_source},
    client::Device,
    db_test,
};

use crate::fixtures::{demo_admin, demo_cohort, demo_trainer, new_trainer};

/// A 1x1 PNG, for a harvest photo the console must show.
const PNG: &[u8] = &[
    137, 80, 78, 71, 13, 10, 26, 10, 0, 0, 0, 13, 73, 72, 68, 82, 0, 0, 0, 1, 0, 0, 0, 1, 8, 6, 0,
    0, 0, 31, 21, 196, 137, 0, 0, 0, 13, 73, 68, 65, 84, 120, 218, 99, 100, 248, 207, 80, 15, 0, 3,
    134, 1, 128, 90, 52, 125, 107, 0, 0, 0, 0, 73, 69, 78, 68, 174, 66, 96, 130,
];

/// Checks the current page with axe-core and, when asked, saves a screenshot of it.
async fn check_screen(browser: &Browser, axe: &str, name: &str) {
    let violations = browser.accessibility_violations(axe).await;
    assert!(
        violations.is_empty(),
        "{name}: serious or critical accessibility violations: {}",
        serde_json::to_string_pretty(&violations).unwrap()
    );
    if let Ok(folder) = std::env::var("VELDWERK_CONSOLE_SCREENSHOTS") {
        std::fs::create_dir_all(&folder).unwrap();
        browser.execute("window.scrollTo(0, 0);", json!([])).await;
        std::fs::write(
            std::path::Path::new(&folder).join(format!("{name}.png")),
            browser.screenshot().await,
        )
        .unwrap();
    }
}

async fn login(browser: &Browser, app: &TestApp, email: &str, password: &str) {
    browser
        .goto(&format!("{}/console/login", app.address))
        .await;
    browser.fill("#email", email).await;
    browser.fill("#password", password).await;
    browser.click("form.stack button[type=submit]").await;
    browser.wait_for_page_after("/console/login").await;
}

/// The texts of the cells a selector matches.
async fn texts(browser: &Browser, css: &str) -> Vec<String> {
    let found = browser
        .execute(
            "return Array.from(document.querySelectorAll(arguments[0])).map((e) => e.textContent.trim());",
            json!([css]),
        )
        .await;
    found
        .as_array()
        .unwrap()
        .iter()
        .map(|text| text.as_str().unwrap().to_owned())
        .collect()
}

/// A form post from outside the browser with the browser's session cookie.
async fn post_with_cookie(
    app: &TestApp,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    let body = serde_urlencoded_pairs(form);
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{}{path}", app.address))
        .header("cookie", format!("veldwerk_console={cookie}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

fn serde_urlencoded_pairs(form: &[(&str, &str)]) -> String {
    form.iter()
        .map(|(name, value)| format!("{name}={}", value.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&")
}

async fn get_with_cookie(app: &TestApp, path: &str, cookie: &str) -> reqwest::Response {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("{}{path}", app.address))
        .header("cookie", format!("veldwerk_console={cookie}"))
        .send()
        .await
        .unwrap()
}

db_test!(async fn a_trainer_runs_a_cohort_from_the_console_in_a_real_browser(app) {
    let Some(browser) = Browser::start().await else { return };
    let Some(axe) = axe_source() else {
        eprintln!("skipped: axe-core is not installed (`npm ci --prefix tests/console`)");
        browser.quit().await;
        return;
    };
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let cohort_page = format!("{}/console/cohorts/{cohort}", app.address);

    // The root leads to the login; a wrong password is said in words, in Dutch by default.
    browser.goto(&app.address).await;
    assert!(browser.url().await.ends_with("/console/login"), "{}", browser.url().await);
    assert_eq!(browser.execute("return document.documentElement.lang", json!([])).await, "nl");
    check_screen(&browser, &axe, "login").await;
    login(&browser, &app, demo::TRAINER_EMAIL, "not-the-password").await;
    assert!(browser.text("#login-problem").await.contains("klopt niet"));

    login(&browser, &app, demo::TRAINER_EMAIL, demo::TRAINER_PASSWORD).await;
    assert!(browser.url().await.ends_with("/console"), "{}", browser.url().await);
    assert_eq!(browser.title().await, "Groepen · Veldwerk");
    check_screen(&browser, &axe, "cohorts").await;
    browser.click_to_load(&format!("a[href='/console/cohorts/{cohort}']")).await;
    assert_eq!(browser.url().await, cohort_page);

    // Before Day 1: invites, created by keyboard and form, and the printable sheet.
    let open_before = texts(&browser, "#invite-table td.code").await.len();
    browser.fill("#invite-count", "3").await;
    browser.fill("#invite-label", "Dag 1").await;
    browser.click_to_load("form[action$='/invites'] button").await;
    let codes = texts(&browser, "#invite-table td.code").await;
    assert_eq!(codes.len(), open_before + 3);
    browser.click_to_load("a[href$='/invites/sheet']").await;
    let sheet_codes = texts(&browser, ".card .code").await;
    assert_eq!(sheet_codes.len(), codes.len());
    assert_eq!(browser.find_all(".card .qr svg").await.len(), codes.len());
    for code in &codes {
        assert!(sheet_codes.contains(code), "{code} is not on the sheet");
    }
    check_screen(&browser, &axe, "invite-sheet").await;

    // A participant enrols with a printed code, registers for push and syncs an interview; the
    // console lists her.
    let session = app.enrol(&codes[0], "Sanne de Vries").await;
    let mut sanne = Device::new(&app.address, &session);
    app.call(reqwest::Method::PUT, "/v1/me/push-device", Some(sanne.debug_token()), Some(json!({
        "token": "sanne-phone", "platform": "android", "locale": "nl-NL",
        "time_zone": "Europe/Amsterdam", "app_version": "1.0.0"
    }))).await.expect(200);
    let cohort_id: Uuid = cohort.parse().unwrap();
    sanne.write("interviews", Uuid::now_v7(), Some(cohort_id), json!({ "name_consent": false, "status": "draft", "notes": "eerste gesprek", "place": "Wijkcentrum De Boog" }));
    sanne.sync().await.unwrap();
    browser.goto(&cohort_page).await;
    assert!(texts(&browser, "#participant-table td").await.contains(&"Sanne de Vries".to_owned()));
    assert!(!texts(&browser, "#invite-table td.code").await.contains(&codes[0]), "a used code is no longer open");
    check_screen(&browser, &axe, "cohort").await;

    // Between the days: the progress view shows Sanne with her device's last sync and her
    // harvest; her work page shows the interview and the harvest photo, served to the console.
    let harvest = cohort_record_id("harvests", sanne.user_id, cohort_id);
    sanne.write("harvests", harvest, Some(cohort_id), json!({ "status": "draft", "outline": "Drie lessen uit de wijk" }));
    sanne.sync().await.unwrap();
    let photo = crate::attachments::declare(&mut sanne, cohort_id, ("harvests", harvest), PNG, "image/png").await;
    crate::attachments::upload(&app, sanne.debug_token(), photo, PNG, PNG.len()).await;
    let progress_page = format!("{cohort_page}/progress");
    browser.click_to_load(&format!("a[href='/console/cohorts/{cohort}/progress']")).await;
    assert_eq!(browser.url().await, progress_page);
    let sanne_row = format!("#progress-table tr[data-participant='{}']", sanne.user_id);
    assert!(browser.text(&format!("{sanne_row} th")).await.contains("Sanne de Vries"));
    assert!(!browser.text(&format!("{sanne_row} td.sync .last-sync")).await.is_empty(), "her pull is her last sync");
    assert_eq!(browser.text(&format!("{sanne_row} td.harvest .state")).await, "in voorbereiding");
    assert!(browser.text(&format!("{sanne_row} td.harvest")).await.contains("1 bijlage"));
    check_screen(&browser, &axe, "progress").await;
    // A nudge: waiting, then delivered; a second the same day is refused in words.
    browser.click_to_load(&format!("{sanne_row} td.nudge button")).await;
    assert!(browser.text(&format!("{sanne_row} td.nudge .last-nudge")).await.contains("wacht op verzending"));
    run_once(&app.services, "console-test").await.unwrap();
    browser.goto(&progress_page).await;
    assert!(browser.text(&format!("{sanne_row} td.nudge .last-nudge")).await.contains("bezorgd 1 / 1"));
    browser.click_to_load(&format!("{sanne_row} td.nudge button")).await;
    assert_eq!(browser.title().await, "Niet gelukt · Veldwerk");
    assert!(browser.text("[role=alert]").await.contains("already nudged"));
    browser.goto(&progress_page).await;
    browser.click_to_load(&format!("{sanne_row} th a")).await;
    assert!(browser.url().await.ends_with(&format!("/participants/{}", sanne.user_id)));
    assert!(browser.text(".interview").await.contains("eerste gesprek"));
    assert!(browser.text(".harvest").await.contains("Drie lessen uit de wijk"));
    let width = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const img = document.querySelector('.attachments img');
             img.scrollIntoView();
             const check = () => img.complete && img.naturalWidth > 0 ? done(img.naturalWidth) : setTimeout(check, 50);
             check();",
            json!([]),
        )
        .await;
    assert_eq!(width, 1, "the harvest photo is shown");
    check_screen(&browser, &axe, "participant-work").await;
    browser.goto(&cohort_page).await;

    // An announcement to the whole cohort: sent, then delivered (log-only push records
    // `logged`), then read once Sanne's app syncs a read receipt.
    browser.fill("#announcement-title", "Dag 2 verplaatst").await;
    browser.fill("#announcement-body", "We beginnen om 10:00 in het Stadskantoor.").await;
    browser.click_to_load("#compose button[type=submit]").await;
    let row = "#announcement-table tbody tr:first-child";
    assert!(browser.text(&format!("{row} th")).await.contains("Dag 2 verplaatst"));
    assert_eq!(browser.text(&format!("{row} td.delivered")).await, "0 / 1");
    assert_eq!(browser.text(&format!("{row} td.read")).await, "0 / 1");
    run_once(&app.services, "console-test").await.unwrap();
    browser.goto(&cohort_page).await;
    assert_eq!(browser.text(&format!("{row} td.delivered")).await, "1 / 1");
    let announcement: Uuid = browser
        .execute(&format!("return document.querySelector('{row}').dataset.announcement"), json!([]))
        .await
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let read = linked_record_id("announcement_reads", sanne.user_id, announcement);
    sanne.write("announcement_reads", read, Some(cohort_id), json!({ "announcement_id": announcement, "read_at": "2027-01-12T08:00:00Z" }));
    sanne.sync().await.unwrap();
    browser.goto(&cohort_page).await;
    assert_eq!(browser.text(&format!("{row} td.read")).await, "1 / 1");

    // A scheduled one can be cancelled.
    browser.fill("#announcement-title", "Later").await;
    browser.fill("#announcement-body", "Voor volgende week.").await;
    browser.execute("document.querySelector('#announcement-at').value = '2030-01-07T09:00'", json!([])).await;
    browser.click_to_load("#compose button[type=submit]").await;
    assert_eq!(browser.text(&format!("{row} td.status .state")).await, "gepland");
    browser.click_to_load(&format!("{row} td.status form button")).await;
    assert_eq!(browser.text(&format!("{row} td.status")).await, "geannuleerd");

    // The schedule: moving Day 2 moves its reminders with it.
    let reminders_before = texts(&browser, "#reminder-table td.send-at").await;
    assert!(!reminders_before.is_empty(), "Sanne's reminders are planned");
    let day2 = browser.text("#day-2 td.date").await;
    let moved = (chrono::NaiveDate::parse_from_str(&day2, "%Y-%m-%d").unwrap() + chrono::Duration::days(2)).to_string();
    browser.click("#day-2 summary").await;
    browser.execute("document.querySelector('#date-2').value = arguments[0]", json!([moved])).await;
    browser.fill("#location-2", "Stadskantoor, zaal 3").await;
    browser.click_to_load("#day-2 form button").await;
    assert_eq!(browser.text("#day-2 td.date").await, moved);
    assert_eq!(browser.text("#day-2 td.location").await, "Stadskantoor, zaal 3");
    let reminders_after = texts(&browser, "#reminder-table td.send-at").await;
    assert_ne!(reminders_before, reminders_after, "the reminder plan follows the schedule");
    let api_days = app.get(&format!("/v1/cohorts/{cohort}"), &trainer.token).await.expect(200);
    assert_eq!(api_days["days"][1]["date"], moved.as_str());

    // English on request, remembered.
    browser.goto(&format!("{cohort_page}?lang=en")).await;
    assert_eq!(browser.execute("return document.documentElement.lang", json!([])).await, "en");
    browser.goto(&app.address).await;
    assert_eq!(browser.title().await, "Cohorts · Veldwerk");
    check_screen(&browser, &axe, "cohorts-en").await;

    // From outside the browser: a post without the CSRF token is refused and changes nothing.
    let cookie = browser.cookie("veldwerk_console").await.expect("a session cookie");
    browser.goto(&cohort_page).await;
    let open_now = texts(&browser, "#invite-table td.code").await.len();
    assert!(open_now > 0);
    let refused = post_with_cookie(&app, &format!("/console/cohorts/{cohort}/invites"), &cookie, &[("count", "5")]).await;
    assert_eq!(refused.status(), 403);
    let forged = post_with_cookie(&app, &format!("/console/cohorts/{cohort}/invites"), &cookie, &[("count", "5"), ("csrf", "0000")]).await;
    assert_eq!(forged.status(), 403);
    browser.goto(&cohort_page).await;
    assert_eq!(texts(&browser, "#invite-table td.code").await.len(), open_now);
    let invites = app.get(&format!("/v1/cohorts/{cohort}/invites"), &trainer.token).await.expect(200);
    assert_eq!(invites.as_array().unwrap().iter().filter(|i| i["redeemed_at"].is_null()).count(), open_now);

    // A trainer of another cohort and a participant see nothing of this cohort.
    let admin = demo_admin(&app).await;
    new_trainer(&app, &admin, "elders@veldwerk.test").await;
    let outsider = Browser::start().await.unwrap();
    login(&outsider, &app, "elders@veldwerk.test", "a-long-trainer-password").await;
    let sanne_work = format!("/participants/{}", sanne.user_id);
    for path in ["", "/invites/sheet", "/progress", sanne_work.as_str()] {
        outsider.goto(&format!("{cohort_page}{path}")).await;
        assert_eq!(outsider.title().await, "Niet gevonden · Veldwerk");
        assert!(!outsider.execute("return document.body.innerText", json!([])).await.as_str().unwrap().contains("Sanne"));
    }
    let outsider_cookie = outsider.cookie("veldwerk_console").await.unwrap();
    let status = get_with_cookie(&app, &format!("/console/cohorts/{cohort}"), &outsider_cookie).await.status();
    assert_eq!(status, 404);
    check_screen(&outsider, &axe, "not-found").await;
    let photo_path = format!("/console/attachments/{photo}");
    assert_eq!(get_with_cookie(&app, &photo_path, &outsider_cookie).await.status(), 404);
    let nudge_path = format!("/console/cohorts/{cohort}/participants/{}/nudge", sanne.user_id);
    outsider.goto(&format!("{}/console", app.address)).await;
    let outsider_csrf = outsider.execute("return document.querySelector('input[name=csrf]').value", json!([])).await;
    let refused = post_with_cookie(&app, &nudge_path, &outsider_cookie, &[("csrf", outsider_csrf.as_str().unwrap())]).await;
    assert_eq!(refused.status(), 404);
    // The trainer's session downloads the photo with Range, like the API.
    let ranged = reqwest::Client::new()
        .get(format!("{}{photo_path}", app.address))
        .header("cookie", format!("veldwerk_console={cookie}"))
        .header("range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &PNG[..8]);
    outsider.quit().await;
    // A participant's app token is no console session, as a cookie or a bearer.
    let as_cookie = get_with_cookie(&app, &format!("/console/cohorts/{cohort}"), sanne.debug_token()).await;
    assert_eq!(as_cookie.status(), 303);
    assert_eq!(as_cookie.headers()["location"], "/console/login");

    // Revoking the console's device from another session ends it at once; so does logging out.
    let devices = app.get("/v1/me/devices", &trainer.token).await.expect(200);
    let console_device = devices.as_array().unwrap().iter()
        .find(|d| d["name"] == "Console (browser)" && d["revoked_at"].is_null())
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .expect("the console's device is listed");
    app.delete(&format!("/v1/me/devices/{console_device}"), &trainer.token).await.expect(204);
    let after_revoke = get_with_cookie(&app, "/console", &cookie).await;
    assert_eq!(after_revoke.status(), 303, "a revoked console device has no session");
    browser.goto(&cohort_page).await;
    assert!(browser.url().await.ends_with("/console/login"));
    login(&browser, &app, demo::TRAINER_EMAIL, demo::TRAINER_PASSWORD).await;
    let second = browser.cookie("veldwerk_console").await.unwrap();
    assert_eq!(get_with_cookie(&app, "/console", &second).await.status(), 200);
    browser.click_to_load("form[action='/console/logout'] button").await;
    assert!(browser.url().await.ends_with("/console/login"));
    assert_eq!(get_with_cookie(&app, "/console", &second).await.status(), 303);
    browser.quit().await;
});

db_test!(async fn console_forms_refuse_bad_input_with_a_page_not_a_500(app) {
    // No browser needed: these are the posts a browser would never send.
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let login_page = client.get(format!("{}/console/login", app.address)).send().await.unwrap();
    let csrf_cookie = login_page.headers().get_all("set-cookie").iter()
        .find_map(|c| c.to_str().unwrap().strip_prefix("veldwerk_console_login=").map(|rest| rest.split(';').next().unwrap().to_owned()))
        .unwrap();
    // A login post without the login form's own token is refused.
    let no_token = client.post(format!("{}/console/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("email={}&password={}", demo::TRAINER_EMAIL, demo::TRAINER_PASSWORD))
        .send().await.unwrap();
    assert_eq!(no_token.status(), 403);
    let signed_in = client.post(format!("{}/console/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", format!("veldwerk_console_login={csrf_cookie}"))
        .body(format!("csrf={csrf_cookie}&email={}&password={}", demo::TRAINER_EMAIL, demo::TRAINER_PASSWORD))
        .send().await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let set_cookie: Value = json!(signed_in.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect::<Vec<_>>());
    let session = set_cookie.as_array().unwrap().iter()
        .find_map(|c| c.as_str().unwrap().strip_prefix("veldwerk_console=").map(|rest| rest.split(';').next().unwrap().to_owned()))
        .unwrap();
    let cookie_line = set_cookie.as_array().unwrap().iter().find(|c| c.as_str().unwrap().starts_with("veldwerk_console=")).unwrap().as_str().unwrap().to_owned();
    assert!(cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"), "{cookie_line}");
    let page = get_with_cookie(&app, &format!("/console/cohorts/{cohort}"), &session).await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    let path = format!("/console/cohorts/{cohort}");
    for (target, form, status) in [
        (format!("{path}/invites"), vec![("csrf", csrf.as_str()), ("count", "0")], 422),
        (format!("{path}/invites"), vec![("csrf", csrf.as_str()), ("count", "many")], 422),
        (format!("{path}/invites"), vec![("csrf", csrf.as_str()), ("count", "1"), ("label", "a%00b")], 400),
        (format!("{path}/announcements"), vec![("csrf", csrf.as_str()), ("title", ""), ("body", "x")], 422),
        (format!("{path}/announcements"), vec![("csrf", csrf.as_str()), ("title", "x"), ("body", "y"), ("recipient", "nobody")], 404),
        (format!("{path}/announcements"), vec![("csrf", csrf.as_str()), ("title", "x"), ("body", "y"), ("publish_at", "tomorrow")], 422),
        (format!("{path}/schedule"), vec![("csrf", csrf.as_str()), ("day_number", "2"), ("date", "2026-02-30")], 422),
        (format!("{path}/schedule"), vec![("csrf", csrf.as_str()), ("day_number", "9"), ("location", "x")], 422),
        (format!("{path}/announcements/{}/cancel", Uuid::now_v7()), vec![("csrf", csrf.as_str())], 404),
        (format!("/console/cohorts/{}/invites", Uuid::now_v7()), vec![("csrf", csrf.as_str()), ("count", "1")], 404),
        ("/console/cohorts/not-an-id/invites".to_owned(), vec![("csrf", csrf.as_str()), ("count", "1")], 404),
    ] {
        let answer = post_with_cookie(&app, &target, &session, &form).await;
        let got = answer.status().as_u16();
        let content_type = answer.headers()["content-type"].to_str().unwrap().to_owned();
        let body = answer.text().await.unwrap();
        assert_eq!(got, status, "{target} {form:?}: {body}");
        assert!(content_type.starts_with("text/html"), "{target}: {content_type}");
        assert!(body.contains("role=\"alert\""), "{target}: {body}");
    }
    // Nothing of it was stored.
    let invites = app.get(&format!("/v1/cohorts/{cohort}/invites"), &trainer.token).await.expect(200);
    assert!(invites.as_array().unwrap().iter().all(|i| i["label"] != "a\u{0}b"));
    let announcements = app.get(&format!("/v1/cohorts/{cohort}/announcements"), &trainer.token).await.expect(200);
    assert_eq!(announcements.as_array().unwrap().len(), 0);
});

/// Sets a form control's value directly (dates, times and selects differ per browser locale when
/// typed).
async fn set_value(browser: &Browser, css: &str, value: &str) {
    browser
        .execute(
            "document.querySelector(arguments[0]).value = arguments[1];",
            json!([css, value]),
        )
        .await;
}

db_test!(async fn an_admin_sets_up_a_municipality_and_cohort_from_the_console_in_a_real_browser(app) {
    let Some(browser) = Browser::start().await else { return };
    let Some(axe) = axe_source() else {
        eprintln!("skipped: axe-core is not installed (`npm ci --prefix tests/console`)");
        browser.quit().await;
        return;
    };
    let admin = demo_admin(&app).await;
    login(&browser, &app, demo::ADMIN_EMAIL, demo::ADMIN_PASSWORD).await;
    browser.click_to_load("a[href='/console/admin']").await;
    assert_eq!(browser.title().await, "Beheer · Veldwerk");
    check_screen(&browser, &axe, "admin").await;

    // A municipality and a trainer.
    browser.fill("#organisation-name", "Gemeente Testdorp").await;
    browser.click_to_load("form[action='/console/admin/organisations'] button").await;
    assert!(texts(&browser, "#organisation-list li").await.contains(&"Gemeente Testdorp".to_owned()));
    browser.fill("#staff-name", "Noor Bakker").await;
    browser.fill("#staff-email", "noor@veldwerk.test").await;
    browser.fill("#staff-password", "een-lang-wachtwoord").await;
    set_value(&browser, "#staff-role", "trainer").await;
    browser.click_to_load("#new-staff button").await;
    assert!(texts(&browser, "#staff-table td").await.contains(&"noor@veldwerk.test".to_owned()));

    // The template: Day 2's title and the first reminder rule.
    browser.click_to_load("a[href^='/console/admin/programmes/']").await;
    let programme_page = browser.url().await;
    let programme: String = programme_page.rsplit('/').next().unwrap().to_owned();
    browser.fill("#day-title-2", "Werken in een netwerk (Testdorp)").await;
    browser.click_to_load("#texts-form button").await;
    assert_eq!(browser.execute("return document.querySelector('#day-title-2').value", json!([])).await, "Werken in een netwerk (Testdorp)");
    set_value(&browser, "input[name=days_before_0]", "4").await;
    browser.click_to_load("#rules-form button[name=save]").await;
    let rules = app.get(&format!("/v1/programmes/{programme}/reminder-rules"), &admin.token).await.expect(200);
    assert!(rules.to_string().contains("\"days_before\":4"), "{rules}");
    check_screen(&browser, &axe, "programme").await;

    // A cohort for the new municipality: it copies the template's new title.
    browser.goto(&format!("{}/console/admin", app.address)).await;
    let organisation = app.get("/v1/organisations", &admin.token).await.expect(200);
    let testdorp = organisation.as_array().unwrap().iter().find(|o| o["name"] == "Gemeente Testdorp").unwrap()["id"].as_str().unwrap().to_owned();
    browser.fill("#cohort-name", "Testdorp, groep 1").await;
    set_value(&browser, "#cohort-organisation", &testdorp).await;
    set_value(&browser, "#cohort-programme", &programme).await;
    for day in 1..=6 {
        let date = chrono::NaiveDate::from_ymd_opt(2027, 9, 6).unwrap() + chrono::Duration::weeks(day - 1);
        set_value(&browser, &format!("#cohort-day-{day}"), &date.to_string()).await;
    }
    browser.fill("#cohort-location", "Raadhuis Testdorp").await;
    browser.click_to_load("#cohort-form button").await;
    let cohort_page = browser.url().await;
    assert!(cohort_page.contains("/console/cohorts/"), "{cohort_page}");
    let cohort = cohort_page.rsplit('/').next().unwrap().to_owned();
    assert!(browser.text("#day-2 th").await.contains("Werken in een netwerk (Testdorp)"));

    // Its settings: a trainer, its own texts, its own rules and back to the programme's.
    browser.click_to_load(&format!("a[href='/console/cohorts/{cohort}/settings']")).await;
    let noor = app.get("/v1/users", &admin.token).await.expect(200);
    let noor_id = noor.as_array().unwrap().iter().find(|u| u["email"] == "noor@veldwerk.test").unwrap()["id"].as_str().unwrap().to_owned();
    set_value(&browser, "#add-trainer", &noor_id).await;
    browser.click_to_load("form[action$='/settings/trainers'] button").await;
    assert!(texts(&browser, "#trainer-list li").await.contains(&"Noor Bakker".to_owned()));
    let parts = app.get(&format!("/v1/cohorts/{cohort}"), &admin.token).await.expect(200);
    let first = parts["assignments"][0]["id"].as_str().unwrap().to_owned();
    browser.fill(&format!("#assignment-title-{first}"), "Loop een dag mee met de wijkagent").await;
    browser.click_to_load("#texts-form button").await;
    let parts = app.get(&format!("/v1/cohorts/{cohort}"), &admin.token).await.expect(200);
    assert_eq!(parts["assignments"][0]["title"], "Loop een dag mee met de wijkagent");
    assert!(browser.text("#rules-source").await.contains("volgt de regels van het programma"));
    set_value(&browser, "input[name=days_before_0]", "5").await;
    browser.click_to_load("#rules-form button[name=save]").await;
    assert!(browser.text("#rules-source").await.contains("eigen regels"));
    let own = app.get(&format!("/v1/cohorts/{cohort}/reminder-rules"), &admin.token).await.expect(200);
    assert!(own.to_string().contains("\"days_before\":5"), "{own}");
    check_screen(&browser, &axe, "cohort-settings").await;
    browser.click_to_load("#rules-form button[name=follow_programme]").await;
    assert!(browser.text("#rules-source").await.contains("volgt de regels van het programma"));

    // Noor trains it now: she sees its settings and rules, not its texts, and no administration.
    let trainer = Browser::start().await.unwrap();
    login(&trainer, &app, "noor@veldwerk.test", "een-lang-wachtwoord").await;
    trainer.goto(&format!("{cohort_page}/settings")).await;
    assert!(trainer.find_all("#rules-form").await.len() == 1);
    assert!(trainer.find_all("#texts-form").await.is_empty());
    assert!(trainer.find_all("a[href='/console/admin']").await.is_empty());
    let cookie = trainer.cookie("veldwerk_console").await.unwrap();
    assert_eq!(get_with_cookie(&app, "/console/admin", &cookie).await.status(), 403);
    trainer.goto(&format!("{cohort_page}/settings")).await;
    let csrf = trainer.execute("return document.querySelector('input[name=csrf]').value", json!([])).await;
    let csrf = csrf.as_str().unwrap();
    let forbidden = post_with_cookie(&app, &format!("/console/cohorts/{cohort}/settings/texts"), &cookie, &[("csrf", csrf), ("day_title_1", "Gekaapt")]).await;
    assert_eq!(forbidden.status(), 403);
    let forbidden = post_with_cookie(&app, "/console/admin/organisations", &cookie, &[("csrf", csrf), ("name", "Gekaapt")]).await;
    assert_eq!(forbidden.status(), 403);
    let after = app.get(&format!("/v1/cohorts/{cohort}"), &admin.token).await.expect(200);
    assert_ne!(after["days"][0]["title"], "Gekaapt");
    assert!(!app.get("/v1/organisations", &admin.token).await.expect(200).to_string().contains("Gekaapt"));
    trainer.quit().await;
    browser.quit().await;
});
