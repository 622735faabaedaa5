//! The page shell every console page shares: document head, skip link, navigation with the
//! language switch and logout, and the main landmark.

use maud::{DOCTYPE, Markup, html};

use super::Context;

/// The console's two languages; Dutch is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Nl,
    En,
}

impl Lang {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "nl" => Some(Lang::Nl),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Nl => "nl",
            Lang::En => "en",
        }
    }

    /// The text in this language; both are written where they are used.
    pub fn pick(self, nl: &'static str, en: &'static str) -> &'static str {
        match self {
            Lang::Nl => nl,
            Lang::En => en,
        }
    }
}

fn head(lang: Lang, title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Veldwerk" }
            link rel="stylesheet" href="/console/assets/console.css";
            meta name="color-scheme" content="light";
            meta name="description" content=(lang.pick("Veldwerk trainersconsole", "Veldwerk trainer console"));
        }
    }
}

/// A page for a signed-in user. `here` is the page's own path, for the language links.
pub fn page(ctx: &Context, title: &str, here: &str, body: Markup) -> Markup {
    let other = match ctx.lang {
        Lang::Nl => Lang::En,
        Lang::En => Lang::Nl,
    };
    html! {
        (DOCTYPE)
        html lang=(ctx.lang.code()) {
            (head(ctx.lang, title))
            body {
                a class="skip" href="#main" { (ctx.t("Naar de inhoud", "Skip to content")) }
                header class="top" {
                    nav aria-label=(ctx.t("Hoofdmenu", "Main menu")) {
                        a class="brand" href="/console" { "Veldwerk" }
                        a href="/console" { (ctx.t("Groepen", "Cohorts")) }
                        @if ctx.actor.role == crate::service::Role::Admin {
                            a href="/console/admin" { (ctx.t("Beheer", "Administration")) }
                        }
                        a href={ (here) "?lang=" (other.code()) } lang=(other.code()) hreflang=(other.code()) {
                            (other.pick("Nederlands", "English"))
                        }
                        form method="post" action="/console/logout" class="inline" {
                            input type="hidden" name="csrf" value=(ctx.csrf);
                            button type="submit" { (ctx.t("Uitloggen", "Log out")) }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page without navigation: login and error pages.
pub fn bare(lang: Lang, title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            (head(lang, title))
            body {
                main id="main" class="narrow" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}
