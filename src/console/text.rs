//! The console's words in French and English: the config's language, or the one a reader picks (`?lang=`).

/// The language a page is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Fr,
    En,
}

impl Lang {
    /// `fr`, `fr-CA`… are French; every other language reads the English pages.
    pub fn of(tag: &str) -> Lang {
        if crate::locale::is_french(tag) {
            Lang::Fr
        } else {
            Lang::En
        }
    }

    /// What `?lang=` accepts: `fr` or `en`.
    pub fn parse(code: &str) -> Option<Lang> {
        match code {
            "fr" => Some(Lang::Fr),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Fr => "fr",
            Lang::En => "en",
        }
    }

    /// The other language, which the switch in the header offers.
    pub fn other(self) -> Lang {
        match self {
            Lang::Fr => Lang::En,
            Lang::En => Lang::Fr,
        }
    }

    /// `english` in this language: the English text is the key, so that
    /// the pages read as they show, and a word with no French yet shows in
    /// English rather than as a key.
    pub fn t(self, english: &'static str) -> &'static str {
        match self {
            Lang::En => english,
            Lang::Fr => french(english).unwrap_or(english),
        }
    }
}

fn french(english: &str) -> Option<&'static str> {
    Some(match english {
        "Overview" => "Vue d'ensemble",
        "Plan" => "Plan",
        "Journal" => "Journal",
        "Rules" => "Règles",
        "Sign out" => "Se déconnecter",
        "Sign in" => "Se connecter",
        "Token" => "Jeton",
        "Sign-in refused." => "Connexion refusée.",
        "Enter the console's token (the value of the environment variable named by http.token_env)." => {
            "Saisissez le jeton de la console (la valeur de la variable d'environnement que nomme http.token_env)."
        }
        "Reminders of the next 14 days, by day and stage" => {
            "Relances des 14 prochains jours, par jour et par étape"
        }
        "Receivables by currency" => "Encours par devise",
        "Receivables aging" => "Balance âgée",
        "Currency" => "Devise",
        "Open invoices" => "Factures ouvertes",
        "Due" => "Dû",
        "Not due" => "Non échu",
        "1–30 days" => "1 à 30 jours",
        "31–60 days" => "31 à 60 jours",
        "61–90 days" => "61 à 90 jours",
        "Over 90 days" => "Plus de 90 jours",
        "Disputed" => "Litige",
        "Held" => "Suspendu",
        "Total due" => "Total dû",
        "Last evaluation" => "Dernière évaluation",
        "Last reload" => "Dernier rechargement",
        "Loaded" => "Chargé",
        "none yet" => "aucune pour l'instant",
        "This console delivers nothing (relance serve): evaluations are the daemon's." => {
            "Cette console n'envoie rien (relance serve) : les évaluations sont celles du démon."
        }
        "ok" => "réussi",
        "failed" => "échec",
        "Problems of the last edit (the previous version stays in use)" => {
            "Problèmes de la dernière modification (la version précédente reste en service)"
        }
        "due" => "dues",
        "sent" => "envoyées",
        "waiting" => "en attente",
        "held back (over limits.max_per_run)" => "retenues (au-delà de limits.max_per_run)",
        "Date" => "Date",
        "Invoice" => "Facture",
        "Customer" => "Client",
        "Policy" => "Politique",
        "Stage" => "Étape",
        "Channel" => "Canal",
        "Amount due" => "Montant dû",
        "Subject" => "Objet",
        "To" => "Destinataire",
        "From" => "Du",
        "Until" => "Au",
        "Search" => "Recherche",
        "Filter" => "Filtrer",
        "any" => "tous",
        "Days" => "Jours",
        "As of" => "Au",
        "Previous" => "Précédent",
        "Next" => "Suivant",
        "Page" => "Page",
        "reminders" => "relances",
        "No reminder matches." => "Aucune relance ne correspond.",
        "cannot be sent" => "ne peut être envoyé",
        "needs approval" => "à approuver",
        "The message" => "Le message",
        "Text" => "Texte",
        "HTML (sandboxed: no script runs)" => "HTML (isolé : aucun script ne s'exécute)",
        "Goes out" => "Envoi",
        "Template" => "Modèle",
        "Language" => "Langue",
        "Copies" => "Copies",
        "Blind copies" => "Copies cachées",
        "Reply to" => "Réponse à",
        "Error" => "Erreur",
        "Covers" => "Couvre",
        "Explanation" => "Explication",
        "Policies, highest priority first" => "Politiques, de la plus prioritaire",
        "Priority" => "Priorité",
        "applies_to" => "applies_to",
        "chosen" => "choisie",
        "Stages" => "Étapes",
        "Reached on" => "Atteinte le",
        "moved from" => "déplacée du",
        "Verdict" => "Verdict",
        "Fires today" => "Part aujourd'hui",
        "Nothing goes out" => "Rien ne part",
        "History" => "Historique",
        "State" => "État",
        "Recipient" => "Destinataire",
        "Attempts" => "Tentatives",
        "Updated" => "Mis à jour",
        "Detail" => "Détail",
        "Upcoming messages" => "Messages à venir",
        "Nothing planned in the window." => "Rien de prévu sur la période.",
        "Nothing in the journal." => "Rien au journal.",
        "Hold" => "Suspension",
        "Promise to pay" => "Promesse de paiement",
        "Status" => "Statut",
        "Due date" => "Échéance",
        "Issued" => "Émise",
        "Days late" => "Jours de retard",
        "Invoices" => "Factures",
        "Sent to this customer" => "Envoyé à ce client",
        "Failed deliveries" => "Envois en échec",
        "No failed delivery." => "Aucun envoi en échec.",
        "Description" => "Description",
        "Anchor" => "Ancrage",
        "Offset" => "Décalage",
        "when" => "when",
        "Repeat" => "Répétition",
        "Scripts" => "Scripts",
        "Functions" => "Fonctions",
        "Templates" => "Modèles",
        "Holds" => "Suspensions",
        "Reason" => "Motif",
        "Problems" => "Problèmes",
        "No problem." => "Aucun problème.",
        "File" => "Fichier",
        "Warnings of the folder" => "Avertissements du dossier",
        "bad feed rows skipped" => "lignes de flux ignorées",
        "Not found" => "Introuvable",
        "in the journal" => "au journal",
        "unmatched" => "sans politique",
        "script errors" => "erreurs de script",
        "every invoice" => "toutes les factures",
        "grouped per customer" => "groupées par client",
        "approval" => "approbation",
        "urgent" => "urgente",
        "thank-you when paid" => "remerciement au paiement",
        "after a broken promise" => "après une promesse non tenue",
        "days" => "jours",
        "every" => "tous les",
        "at most" => "au plus",
        "times" => "fois",
        "Amounts" => "Montants",
        "open" => "ouvert",
        "overdue" => "en retard",
        "Unknown customer" => "Client inconnu",
        "The message is not in the plan (the plan changed since)." => {
            "Le message n'est pas dans le plan (le plan a changé depuis)."
        }
        "Remove the hold" => "Lever la suspension",
        "Hold until" => "Suspendre jusqu'au",
        "Put on hold" => "Suspendre",
        "Promise to pay on" => "Promesse de paiement le",
        "Note" => "Note",
        "Record the promise" => "Enregistrer la promesse",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn french_pages_follow_french_languages_and_english_the_others() {
        assert_eq!(Lang::of("fr-CA"), Lang::Fr);
        assert_eq!(Lang::of("de"), Lang::En);
        assert_eq!(Lang::Fr.t("Rules"), "Règles");
        assert_eq!(Lang::En.t("Rules"), "Rules");
        assert_eq!(Lang::Fr.t("no such words"), "no such words");
    }
}
