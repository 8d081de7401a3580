-- mql_velocity: how long leads take from their first touch to becoming an MQL,
-- per scoring model: median, 90th percentile and mean, in days.
--
-- Run as is:  clickhouse-client --multiquery < analytics/sql/mql_velocity.sql
--
-- First touch = the lead's earliest page view, email open or click, form or
-- custom event, its anonymous history (identity_links) included, campaign or
-- not. MQL = the lead's first crossing of the model's threshold ever; it is
-- counted when that crossing is dated in the period below. Leads with no
-- tracked touch before their MQL are left out. Percentiles are exact
-- (quantileExact: the value at rank floor(level * count), so the median of an
-- even count is the upper middle value). Bot-flagged events are left out;
-- FINAL folds replayed rows. The campaign filter keeps leads whose first
-- campaign touch belongs to that campaign.
SELECT
    model,
    count() AS mqls,
    round(quantileExact(0.5)(days), 2) AS median_days,
    round(quantileExact(0.9)(days), 2) AS p90_days,
    round(avg(days), 2) AS avg_days
FROM
(
    SELECT
        model,
        (toInt64(mql_ms) - toInt64(first_ms)) / 86400000 AS days,
        first_ms,
        first_campaign
    FROM
    (
        SELECT model, lead_id AS person, min(crossed_at_ms) AS mql_ms, min(crossed_at) AS mql_at
        FROM leadstream.mql FINAL
        GROUP BY model, lead_id
        HAVING toDate(mql_at) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
    )
    ANY LEFT JOIN
    (
        SELECT
            if(lead_id != '', lead_id, linked_lead) AS person,
            min(event_time_ms) AS first_ms,
            argMinIf(campaign, (event_time_ms, campaign), campaign != '') AS first_campaign
        FROM leadstream.events FINAL
        ANY LEFT JOIN
        (
            SELECT anonymous_id, argMin(lead_id, (linked_at, lead_id)) AS linked_lead
            FROM leadstream.identity_links FINAL
            GROUP BY anonymous_id
        ) USING (anonymous_id)
        WHERE bot = 0
          AND type IN ('page_view', 'email_open', 'email_click', 'form_submit', 'custom')
          AND (lead_id != '' OR linked_lead != '')
        GROUP BY person
    ) USING (person)
    WHERE first_ms > 0 AND first_ms <= mql_ms
)
WHERE '' /*campaign*/ = '' OR first_campaign = '' /*campaign*/
GROUP BY model
ORDER BY model;
