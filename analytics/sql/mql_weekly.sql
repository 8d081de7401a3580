-- mql_weekly: MQL crossings per week (weeks start on Monday), all models.
--
-- Run as is:  clickhouse-client --multiquery < analytics/sql/mql_weekly.sql
--
-- Every crossing counts, so a lead that falls back below the threshold and
-- qualifies again (a recycled lead) counts again. Weeks without a crossing
-- are not listed. FINAL folds replayed rows. Period: crossings dated between
-- the two dates below (inclusive, server time zone). The campaign filter
-- keeps leads whose first campaign touch (bot-flagged events left out,
-- anonymous history included) belongs to that campaign.
SELECT
    toMonday(crossed_at) AS week,
    count() AS mqls
FROM
(
    SELECT lead_id AS person, crossed_at
    FROM leadstream.mql FINAL
    WHERE toDate(crossed_at) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
)
ANY LEFT JOIN
(
    SELECT
        if(lead_id != '', lead_id, linked_lead) AS person,
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
WHERE '' /*campaign*/ = '' OR first_campaign = '' /*campaign*/
GROUP BY week
ORDER BY week;
