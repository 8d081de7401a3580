-- account_funnel: how many B2B accounts reached each step of the funnel
-- visit -> form -> MQL -> MQA -> deal won, grouped by the campaign of the account's first touch.
--
-- Run as is:  clickhouse-client --multiquery < analytics/sql/account_funnel.sql
--
-- An account's people are the leads whose current account it is: the account
-- of a person's latest group call (account_members, source 'group'; a
-- visitor's group call counts for the lead it is linked to in identity_links),
-- else of its latest work e-mail domain (source 'email_domain', written when
-- accounts.from-email-domain is on). A lead that moved counts in its new
-- account only. An account's steps are its people's: visit = a page_view,
-- form = a form_submit, MQL = a threshold crossing of any member (table mql),
-- MQA = the account's own crossing (table mqa), won = a member's deal_won.
-- windowFunnel counts a step only when the steps before it happened earlier,
-- within 90 days (7776000 s) of the visit. Times are compared to the second;
-- steps in the same second count in funnel order (the form that makes a
-- lead an MQL and its account an MQA carries both crossings' time). The
-- group is the campaign of the first touch of any member (a page view, email
-- open or click, form or custom event with a campaign), '(none)' without
-- one; of touches in the same millisecond, the campaign first in
-- alphabetical order. Bot-flagged events are left out; FINAL folds replayed
-- rows.
-- Period: events, MQL and MQA crossings dated between the two dates below
-- (inclusive, server time zone); the campaign filter keeps one group.
SELECT
    first_campaign AS campaign,
    countIf(level >= 1) AS accounts,
    countIf(level >= 2) AS forms,
    countIf(level >= 3) AS mqls,
    countIf(level >= 4) AS mqas,
    countIf(level >= 5) AS won
FROM
(
    -- level = windowFunnel(7776000)(event_time, step = 'visit', step = 'form',
    -- step = 'mql', step = 'mqa', step = 'won'), with steps of the same second
    -- in funnel order: ClickHouse orders events of equal timestamps
    -- arbitrarily (18.16) or by condition (24+). The timestamp is the second
    -- * 5 + the step's rank (0 visit .. 4 won), the window 7776000 * 5 + 4 (a
    -- step 90 days after the visit counts, a second later not). ClickHouse
    -- 18.16 takes only a UInt32 or DateTime timestamp, held as Int32: the
    -- seconds count from the account's first step, up to 429496728 (13 years).
    SELECT
        first_campaign,
        arrayReduce('windowFunnel(38880004)',
            arrayMap(s -> toUInt32(least(s.1 - first_step_at, 429496728) * 5 + s.2 - 1), steps),
            arrayMap(s -> s.2 = 1, steps), arrayMap(s -> s.2 = 2, steps), arrayMap(s -> s.2 = 3, steps),
            arrayMap(s -> s.2 = 4, steps), arrayMap(s -> s.2 = 5, steps)) AS level
    FROM
    (
        SELECT
            account_id,
            groupArrayIf((toUInt32(event_time), indexOf(['visit', 'form', 'mql', 'mqa', 'won'], step)), step != '') AS steps,
            minIf(toUInt32(event_time), step != '') AS first_step_at,
            if(argMinIf(touch_campaign, (event_time_ms, touch_campaign), touch_campaign != '') = '', '(none)',
               argMinIf(touch_campaign, (event_time_ms, touch_campaign), touch_campaign != '')) AS first_campaign
        FROM
        (
            SELECT account_id, event_time, event_time_ms, step, touch_campaign
            FROM
            (
                SELECT
                    if(lead_id != '', lead_id, linked_lead) AS person,
                    event_time,
                    event_time_ms,
                    multiIf(type = 'page_view', 'visit', type = 'form_submit', 'form', type = 'deal_won', 'won', '') AS step,
                    if(type IN ('page_view', 'email_open', 'email_click', 'form_submit', 'custom'), campaign, '') AS touch_campaign
                FROM leadstream.events FINAL
                ANY LEFT JOIN
                (
                    SELECT anonymous_id, argMin(lead_id, (linked_at, lead_id)) AS linked_lead
                    FROM leadstream.identity_links FINAL
                    GROUP BY anonymous_id
                ) USING (anonymous_id)
                WHERE bot = 0 AND (lead_id != '' OR linked_lead != '')
                  AND toDate(event_time) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
                UNION ALL
                SELECT
                    lead_id AS person,
                    crossed_at AS event_time,
                    crossed_at_ms AS event_time_ms,
                    materialize('mql') AS step,
                    materialize('') AS touch_campaign
                FROM leadstream.mql FINAL
                WHERE toDate(crossed_at) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
            )
            ANY INNER JOIN
            (
                -- each person's current account
                SELECT
                    person,
                    if(countIf(source = 'group') > 0,
                       argMaxIf(account_id, (joined_at_ms, event_id), source = 'group'),
                       argMax(account_id, (joined_at_ms, event_id))) AS account_id
                FROM
                (
                    SELECT if(lead_id != '', lead_id, linked_lead) AS person, account_id, source, joined_at_ms, event_id
                    FROM leadstream.account_members FINAL
                    ANY LEFT JOIN
                    (
                        SELECT anonymous_id, argMin(lead_id, (linked_at, lead_id)) AS linked_lead
                        FROM leadstream.identity_links FINAL
                        GROUP BY anonymous_id
                    ) USING (anonymous_id)
                    WHERE lead_id != '' OR linked_lead != ''
                )
                GROUP BY person
            ) USING (person)
            UNION ALL
            SELECT
                account_id,
                crossed_at AS event_time,
                crossed_at_ms AS event_time_ms,
                materialize('mqa') AS step,
                materialize('') AS touch_campaign
            FROM leadstream.mqa FINAL
            WHERE toDate(crossed_at) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
        )
        GROUP BY account_id
    )
    -- first_step_at is used inside a lambda above; ClickHouse 18.16 drops a
    -- subquery column that only a lambda uses, so name it here too.
    WHERE first_step_at >= 0
)
WHERE '' /*campaign*/ = '' OR first_campaign = '' /*campaign*/
GROUP BY first_campaign
ORDER BY accounts DESC, campaign;
