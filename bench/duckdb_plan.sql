-- The day-one plan of a generated relance folder (examples/gen.rs: the shipped
-- rules), written as the one SQL query a user would write instead of relance:
-- the yardstick of issue 16. bench/duckdb_plan.py runs it in the folder with
-- the variable as_of set, and it writes the plan as a JSON array on stdout,
-- one row per reminder, the fields of `relance preview --format json`. With
-- the command-line tool, in the folder:
--   duckdb -c "SET VARIABLE as_of = DATE '2026-12-01'" -f duckdb_plan.sql
--
-- What it does, after docs/contract.md §2–§5 and the folder's files:
--   * both feeds of relance.yaml: data/invoices.csv and data/export_fr.csv in
--     the French dialect (`;`, decimal comma with spaces between thousands,
--     dd/mm/yyyy, French column names); the config's defaults for an empty
--     status (open), currency (EUR) and language (fr);
--   * open invoices only: status open and amount - amount_paid > 0;
--   * each customer's aggregates over all its invoices in both feeds: tags
--     (the union), late_paid_ratio and avg_days_late over the settled invoices
--     (those with a paid date; early counts as 0 days late), rounded as relance
--     rounds them (4 and 2 places);
--   * the policy by priority: habitual_late (30: late_paid_ratio >= 0.5, avg_days_late
--     >= 10, not a key account), key_accounts (20: tagged key-account), standard (10: the rest);
--   * the stages of rules/*.yaml in file order, a stage's repeats right after
--     it (anchor due_date + offset + k × every), and of the stages reached on
--     as_of, the latest whose condition holds fires (the catch-up of an empty
--     journal, §4): standard's overdue_2 only when amount_due >= 50;
--   * the subject line of each reminder's template in its language (fr for
--     fr and fr-CA, en otherwise) with relance's money and long-date forms,
--     the recipient (the email for email, the customer's name for letters and
--     tasks, nothing for calls), the account manager in cc of key_accounts'
--     overdue_2, approval for the stages marked approve, and one message id
--     per customer and template (100 invoices at most) for the stages
--     grouped by customer;
--   * rows in invoice-number order, as relance writes them.
--
-- What it leaves out, because nothing in the generated folder needs it on
-- 2026-12-01 (relance handles all of it, for every date):
--   * calendars and `shift: earlier` (2026-12-02 is a working day, so no stage
--     date after as_of moves onto it or before it), time zones;
--   * holds (rules/holds.yaml holds F2026-0075, which no generated feed has),
--     promise dates and the promise_broken stages, on_paid thank-you notes,
--     the journal (it is empty on day one), approvals already given, limits;
--   * a plan over several days (--days N), and rendering the message bodies;
--   * Rhai: the applies_to and when expressions are translated by hand, and
--     bad rows are not reported (the generated feeds have none).

COPY (
WITH
feeds AS (
    SELECT number, customer_id, customer_name, email, due_date,
           amount, amount_paid, currency, status, paid_date, language, tags,
           account_manager_email
    FROM read_csv('data/invoices.csv', header = true, delim = ',',
                  dateformat = '%Y-%m-%d',
                  types = {'amount': 'DECIMAL(18,2)', 'amount_paid': 'DECIMAL(18,2)',
                           'issue_date': 'DATE', 'due_date': 'DATE', 'paid_date': 'DATE',
                           'tags': 'VARCHAR', 'account_manager_email': 'VARCHAR'})
    UNION ALL
    SELECT "N° facture", "Code client", "Raison sociale", "Courriel", "Échéance",
           replace(replace("Montant TTC", ' ', ''), ',', '.')::DECIMAL(18,2),
           replace(replace("Réglé", ' ', ''), ',', '.')::DECIMAL(18,2),
           "Devise", "Statut", "Date règlement", "Langue", "Étiquettes",
           account_manager_email
    FROM read_csv('data/export_fr.csv', header = true, delim = ';',
                  dateformat = '%d/%m/%Y', all_varchar = false,
                  types = {'Montant TTC': 'VARCHAR', 'Réglé': 'VARCHAR',
                           'Date facture': 'DATE', 'Échéance': 'DATE', 'Date règlement': 'DATE',
                           'Étiquettes': 'VARCHAR', 'account_manager_email': 'VARCHAR'})
),
invoices AS (
    SELECT * REPLACE (coalesce(currency, 'EUR') AS currency,
                      coalesce(status, 'open') AS status,
                      coalesce(language, 'fr') AS language),
           amount - coalesce(amount_paid, 0) AS amount_due,
           coalesce(string_split(tags, '|'), []) AS tag_list
    FROM feeds
),
customers AS (
    SELECT customer_id,
           bool_or(list_contains(tag_list, 'key-account')) AS key_account,
           count(paid_date) AS settled,
           count(*) FILTER (WHERE paid_date > due_date) AS paid_late,
           sum(greatest(paid_date - due_date, 0)) AS days_late
    FROM invoices
    GROUP BY customer_id
),
habits AS (
    SELECT customer_id, key_account,
           CASE WHEN settled > 0 THEN round(paid_late / settled, 4) ELSE 0 END AS late_paid_ratio,
           CASE WHEN settled > 0 THEN round(days_late / settled, 2) ELSE 0 END AS avg_days_late
    FROM customers
),
open_invoices AS (
    SELECT i.*,
           CASE WHEN h.late_paid_ratio >= 0.5 AND h.avg_days_late >= 10 AND NOT h.key_account
                     THEN 'habitual_late'
                WHEN h.key_account THEN 'key_accounts'
                ELSE 'standard' END AS policy
    FROM invoices i JOIN habits h USING (customer_id)
    WHERE i.status = 'open' AND i.amount_due > 0
),
-- rules/*.yaml, one row per stage in file order (promise_broken left out: no promise dates).
stages (policy, rank, stage, "offset", channel, template, approve, grouped, every, repeats, min_due) AS (
    VALUES
    ('standard', 1, 'courtesy', -7, 'email', 'before_due', false, false, 0, 0, NULL),
    ('standard', 2, 'due_soon', -2, 'email', 'before_due', false, false, 0, 0, NULL),
    ('standard', 3, 'overdue_1', 1, 'email', 'statement', false, true, 0, 0, NULL),
    ('standard', 4, 'overdue_2', 15, 'email', 'statement', false, true, 0, 0, 50),
    ('standard', 5, 'formal_notice', 30, 'letter', 'formal_notice', true, false, 0, 0, NULL),
    ('standard', 6, 'collection', 90, 'task', 'collection_handoff', true, false, 30, 3, NULL),
    ('key_accounts', 1, 'courtesy', -7, 'email', 'before_due', false, false, 0, 0, NULL),
    ('key_accounts', 2, 'overdue_1', 3, 'email', 'overdue_friendly', false, false, 0, 0, NULL),
    ('key_accounts', 3, 'overdue_2', 20, 'email', 'overdue_firm', false, false, 0, 0, NULL),
    ('key_accounts', 4, 'account_call', 45, 'call', 'call_script', false, false, 0, 0, NULL),
    ('habitual_late', 1, 'early_notice', -10, 'email', 'before_due', false, false, 0, 0, NULL),
    ('habitual_late', 2, 'due_soon', -3, 'email', 'before_due', false, false, 0, 0, NULL),
    ('habitual_late', 3, 'overdue_1', 1, 'email', 'statement', false, true, 0, 0, NULL),
    ('habitual_late', 4, 'overdue_2', 8, 'email', 'statement', false, true, 0, 0, NULL),
    ('habitual_late', 5, 'formal_notice', 15, 'letter', 'formal_notice', true, false, 0, 0, NULL),
    ('habitual_late', 6, 'collection', 45, 'task', 'collection_handoff', true, false, 30, 2, NULL)
),
occurrences AS (
    SELECT s.*, k::INTEGER AS occurrence
    FROM stages s, range(0, 4) AS r(k)
    WHERE k <= s.repeats
),
-- The latest reached stage occurrence whose condition holds: the one that fires.
fired AS (
    SELECT i.*, o.rank, o.stage, o.occurrence, o.channel, o.template, o.approve, o.grouped,
           getvariable('as_of') AS day,
           CASE WHEN i.language LIKE 'fr%' THEN 'fr' ELSE 'en' END AS lang
    FROM open_invoices i JOIN occurrences o USING (policy)
    WHERE i.due_date + (o."offset" + o.occurrence * o.every) <= getvariable('as_of')
      AND (o.min_due IS NULL OR i.amount_due >= o.min_due)
    QUALIFY row_number() OVER (PARTITION BY i.number ORDER BY o.rank DESC, o.occurrence DESC) = 1
),
-- relance's money (`1 234,56 €`, `€1,234.56`) and long dates (`1er décembre 2026`, `December 1, 2026`).
written AS (
    SELECT *,
           CASE WHEN lang = 'fr'
                THEN translate(format('{:,.2f}', amount_due), ',.', ' ,') || ' ' ||
                     CASE currency WHEN 'EUR' THEN '€' WHEN 'USD' THEN '$ US'
                                   WHEN 'CAD' THEN '$ CA' ELSE currency END
                ELSE CASE currency WHEN 'EUR' THEN '€' WHEN 'USD' THEN '$'
                                   WHEN 'CAD' THEN 'CA$' ELSE currency || ' ' END ||
                     format('{:,.2f}', amount_due) END AS money,
           CASE WHEN lang = 'fr'
                THEN CASE WHEN day(due_date) = 1 THEN '1er' ELSE day(due_date)::VARCHAR END || ' ' ||
                     ['janvier', 'février', 'mars', 'avril', 'mai', 'juin', 'juillet', 'août',
                      'septembre', 'octobre', 'novembre', 'décembre'][month(due_date)] || ' ' ||
                     year(due_date)
                ELSE strftime(due_date, '%B ') || day(due_date) || ', ' || year(due_date) END AS due_long,
           day - due_date AS days_overdue,
           -- a grouped message lists at most 100 invoices (MAX_INVOICES_PER_MESSAGE)
           CASE WHEN grouped THEN (row_number() OVER (PARTITION BY customer_id, template, grouped
                                                      ORDER BY number) - 1) // 100 END AS part
    FROM fired
)
SELECT day AS date,
       number AS invoice,
       customer_id,
       customer_name,
       policy,
       stage,
       occurrence,
       CASE WHEN grouped
            THEN 'customer.' || customer_id || '.' || template || '.' || day || '.' ||
                 min(number) OVER (PARTITION BY customer_id, template, grouped, part)
            ELSE number || '.' || policy || '.' || stage || '.' || occurrence END AS message,
       channel,
       CASE channel WHEN 'email' THEN email WHEN 'call' THEN '' ELSE customer_name END AS "to",
       CASE WHEN policy = 'key_accounts' AND stage = 'overdue_2' AND account_manager_email IS NOT NULL
            THEN [account_manager_email] END AS cc,
       lang AS language,
       template,
       CASE template || '.' || lang
           WHEN 'before_due.fr' THEN 'Facture ' || number || ' : échéance le ' || due_long
           WHEN 'before_due.en' THEN 'Invoice ' || number || ' is due on ' || due_long
           WHEN 'statement.fr' THEN 'Relevé de compte : factures en attente de règlement — ' || customer_name
           WHEN 'statement.en' THEN 'Statement: invoices awaiting payment — ' || customer_name
           WHEN 'formal_notice.fr' THEN 'Mise en demeure de payer — facture ' || number
           WHEN 'formal_notice.en' THEN 'Formal notice to pay — invoice ' || number
           WHEN 'collection_handoff.fr' THEN 'Recouvrement' ||
                CASE WHEN occurrence > 0 THEN ' (suivi n° ' || occurrence || ')' ELSE '' END ||
                ' : ' || customer_name || ', facture ' || number || ', ' || money
           WHEN 'collection_handoff.en' THEN 'Collection' ||
                CASE WHEN occurrence > 0 THEN ' (follow-up ' || occurrence || ')' ELSE '' END ||
                ': ' || customer_name || ', invoice ' || number || ', ' || money
           WHEN 'overdue_friendly.fr' THEN 'Relance : facture ' || number || ' échue le ' || due_long
           WHEN 'overdue_friendly.en' THEN 'Reminder: invoice ' || number || ' was due on ' || due_long
           WHEN 'overdue_firm.fr' THEN 'Deuxième relance : facture ' || number || ' impayée depuis ' ||
                days_overdue || ' jours'
           WHEN 'overdue_firm.en' THEN 'Second reminder: invoice ' || number || ' is ' ||
                days_overdue || ' days overdue'
           WHEN 'call_script.fr' THEN 'Appeler ' || customer_name || ' : facture ' || number || ', ' ||
                money || ' en retard de ' || days_overdue || ' jours'
           WHEN 'call_script.en' THEN 'Call ' || customer_name || ': invoice ' || number || ', ' ||
                money || ', ' || days_overdue || ' days overdue'
       END AS subject,
       amount_due::VARCHAR AS amount_due,
       currency,
       CASE WHEN approve THEN 'required' END AS approval
FROM written
ORDER BY number
) TO '/dev/stdout' (FORMAT json, ARRAY true);
