-- romi: return on marketing investment per campaign,
-- ROMI = (attributed revenue - cost) / cost, under three attribution models.
--
-- Run as is:  clickhouse-client --multiquery < analytics/sql/romi.sql
--
-- Revenue: every non-bot deal_won event dated in the period below, its
-- revenue column as is (no currency conversion: the currencies column lists
-- what was summed, '?' for an amount without a currency, so a mix shows).
-- Touches of a deal: the lead's non-bot page views, email opens and clicks,
-- forms and custom events with a campaign, its anonymous history
-- (identity_links) included, strictly before the deal, at any time.
--   first_touch: the deal's revenue goes to the campaign of the earliest touch;
--   last_touch:  to the campaign of the latest touch;
--   linear:      split evenly over all touches (a campaign with 2 of 3 touches
--                gets 2/3).
-- A deal without touches is credited to '(none)' in all three models, so each
-- model's revenue adds up to the total.
-- Cost: campaign_costs (all channels) of the days in the period. ROMI is NULL
-- where the cost is 0. FINAL folds replayed events and re-imported costs.
-- Period: the two dates below (inclusive, server time zone).
SELECT
    campaign,
    round(sum(spend), 2) AS cost,
    round(sum(rev_first), 2) AS revenue_first_touch,
    round(sum(rev_last), 2) AS revenue_last_touch,
    round(sum(rev_linear), 2) AS revenue_linear,
    if(sum(spend) > 0, round((sum(rev_first) - sum(spend)) / sum(spend), 4), NULL) AS romi_first_touch,
    if(sum(spend) > 0, round((sum(rev_last) - sum(spend)) / sum(spend), 4), NULL) AS romi_last_touch,
    if(sum(spend) > 0, round((sum(rev_linear) - sum(spend)) / sum(spend), 4), NULL) AS romi_linear,
    arrayStringConcat(arraySort(groupUniqArrayIf(if(currency = '', '?', currency), spend != 0 OR rev_first != 0 OR rev_last != 0 OR rev_linear != 0)), ',') AS currencies
FROM
(
    -- one row per credited touch of a deal: (campaign, first?, last?, share)
    SELECT
        credit.1 AS campaign,
        toFloat64(0) AS spend,
        deal_revenue * credit.2 AS rev_first,
        deal_revenue * credit.3 AS rev_last,
        deal_revenue * credit.4 AS rev_linear,
        deal_currency AS currency
    FROM
    (
        SELECT
            deal_revenue,
            deal_currency,
            arrayMap(t -> t.2, arraySort(arrayFilter(t -> t.1 < deal_ms, touches))) AS campaigns,
            arrayJoin(if(length(campaigns) = 0,
                [('(none)', toFloat64(1), toFloat64(1), toFloat64(1))],
                arrayMap((c, i) -> (c, toFloat64(i = 1), toFloat64(i = length(campaigns)), 1 / length(campaigns)),
                         campaigns, arrayEnumerate(campaigns)))) AS credit
        FROM
        (
            SELECT
                if(lead_id != '', lead_id, linked_lead) AS person,
                event_time_ms AS deal_ms,
                toFloat64(revenue) AS deal_revenue,
                currency AS deal_currency
            FROM leadstream.events FINAL
            ANY LEFT JOIN
            (
                SELECT anonymous_id, argMin(lead_id, (linked_at, lead_id)) AS linked_lead
                FROM leadstream.identity_links FINAL
                GROUP BY anonymous_id
            ) USING (anonymous_id)
            WHERE bot = 0 AND type = 'deal_won'
              AND toDate(event_time) BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
        )
        ANY LEFT JOIN
        (
            SELECT
                if(lead_id != '', lead_id, linked_lead) AS person,
                groupArray((event_time_ms, campaign)) AS touches
            FROM leadstream.events FINAL
            ANY LEFT JOIN
            (
                SELECT anonymous_id, argMin(lead_id, (linked_at, lead_id)) AS linked_lead
                FROM leadstream.identity_links FINAL
                GROUP BY anonymous_id
            ) USING (anonymous_id)
            WHERE bot = 0 AND campaign != ''
              AND type IN ('page_view', 'email_open', 'email_click', 'form_submit', 'custom')
              AND (lead_id != '' OR linked_lead != '')
            GROUP BY person
        ) USING (person)
        -- deal_ms is used inside a lambda above; ClickHouse 18.16 drops a
        -- subquery column that only a lambda uses, so name it here too.
        WHERE deal_ms > 0
    )

    UNION ALL

    SELECT
        campaign,
        toFloat64(cost) AS spend,
        toFloat64(0) AS rev_first,
        toFloat64(0) AS rev_last,
        toFloat64(0) AS rev_linear,
        currency
    FROM leadstream.campaign_costs FINAL
    WHERE day BETWEEN toDate('2000-01-01') /*from*/ AND toDate('2100-12-31') /*to*/
)
WHERE '' /*campaign*/ = '' OR campaign = '' /*campaign*/
GROUP BY campaign
ORDER BY campaign;
