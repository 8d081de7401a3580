-- funnel_by_campaign: how many people reached each step of the funnel
-- visit -> form -> MQL -> deal won, grouped by the campaign of their first touch.
--
-- Run as is:  clickhouse-client --multiquery < analytics/sql/funnel_by_campaign.sql
--
-- A person is a lead (its own events plus those of the anonymous ids linked
-- to it in identity_links; an anonymous id linked to several leads belongs to
-- the earliest link) or, never linked, an anonymous visitor. Steps:
-- visit = page_view, form = form_submit, MQL = a threshold crossing of any
-- model (table mql), won = deal_won. windowFunnel counts a step only when the
-- steps before it happened earlier, within 90 days (7776000 s) of the visit:
-- a lead whose first event is a plain form post reaches no step. Times are
-- compared to the second; steps in the same second count in funnel order
-- (an MQL's crossed_at is the time of the form that triggered it, so the
-- form and its MQL always tie).
-- The group is the campaign of the person's first touch (a page view, email
-- open or click, form or custom event with a campaign), '(none)' without one;
-- of touches in the same millisecond, the campaign first in alphabetical
-- order (as romi.sql's first touch).
-- Bot-flagged events are left out; FINAL folds replayed rows.
-- Period: events and MQL crossings dated between the two dates below
-- (inclusive, server time zone); the campaign filter keeps one group.
SELECT
    first_campaign AS campaign,
    countIf(level >= 1) AS visitors,
    countIf(level >= 2) AS forms,
    countIf(level >= 3) AS mqls,
    countIf(level >= 4) AS won
FROM
(
    -- level = windowFunnel(7776000)(event_time, step = 'visit', step = 'form',
    -- step = 'mql', step = 'won'), with steps of the same second in funnel
    -- order: ClickHouse orders events of equal timestamps arbitrarily (18.16)
    -- or by condition (24+). The timestamp is the second * 4 + the step's rank
    -- (0 visit .. 3 won), the window 7776000 * 4 + 3 (a step 90 days after
    -- the visit counts, a second later not). ClickHouse 18.16 takes only a
    -- UInt32 or DateTime timestamp, held as Int32: the seconds count from
    -- the person's first step, up to 536870911 (17 years).
    SELECT
        first_campaign,
        arrayReduce('windowFunnel(31104003)',
            arrayMap(s -> toUInt32(least(s.1 - first_step_at, 536870911) * 4 + s.2 - 1), steps),
            arrayMap(s -> s.2 = 1, steps), arrayMap(s -> s.2 = 2, steps),
            arrayMap(s -> s.2 = 3, steps), arrayMap(s -> s.2 = 4, steps)) AS level
    FROM
    (
        SELECT
            person,
            groupArrayIf((toUInt32(event_time), indexOf(['visit', 'form', 'mql', 'won'], step)), step != '') AS steps,
            minIf(toUInt32(event_time), step != '') AS first_step_at,
            if(argMinIf(touch_campaign, (event_time_ms, touch_campaign), touch_campaign != '') = '', '(none)',
               argMinIf(touch_campaign, (event_time_ms, touch_campaign), touch_campaign != '')) AS first_campaign
        FROM
        (
            SELECT
                if(lead_id != '', lead_id, if(linked_lead != '', linked_lead, concat('anon:', anonymous_id))) AS person,
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
            WHERE bot = 0
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
        GROUP BY person
    )
    -- first_step_at is used inside a lambda above; ClickHouse 18.16 drops a
    -- subquery column that only a lambda uses, so name it here too.
    WHERE first_step_at >= 0
)
WHERE '' /*campaign*/ = '' OR first_campaign = '' /*campaign*/
GROUP BY first_campaign
ORDER BY visitors DESC, campaign;
