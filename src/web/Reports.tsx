import { memo, useEffect, useMemo, useRef, useState, type FormEvent } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { ApiError } from './api.ts';
import { formatDuration } from './format.ts';

interface Stats {
  p50: number | null;
  p90: number | null;
  max: number | null;
  count: number;
}
interface ReportRow {
  key: string;
  label: string;
  messagesIn: number;
  messagesOut: number;
  automaticOut: number;
  patientsServed: number;
  waits: number;
  unanswered: number;
  firstResponse: Stats;
  replyTime: Stats;
  slaMetPercent: number | null;
  handoffs: number | null;
}
interface Report {
  timeZone: string;
  clockNote: string;
  scopeNote: string;
  slaMinutes: number;
  rows: ReportRow[];
  total: ReportRow;
}
interface DailySeries {
  days: Array<{ date: string; total: ReportRow }>;
}
type GroupBy = 'coordinator' | 'team' | 'channel';

const isoDate = (d: Date) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')}`;
const daysAgo = (n: number) => isoDate(new Date(Date.now() - n * 86_400_000));
const seconds = (s: number | null) => (s === null ? '—' : formatDuration(s * 1000));
const zones: string[] = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';

/** GET with the session cookie; reports are reads, so no CSRF token is needed. */
async function getReport(path: string): Promise<Response> {
  const response = await fetch(path, { credentials: 'same-origin' });
  if (!response.ok) {
    const json = await response.json().catch(() => null);
    throw new ApiError(response.status, json?.code ?? 'error', json?.message ?? response.statusText);
  }
  return response;
}

/** Reports for supervisors: a table per coordinator, team or channel, daily trend and SLA charts (uPlot), and CSV. */
export const ReportsDashboard = memo(function ReportsDashboard() {
  const [from, setFrom] = useState(() => daysAgo(6));
  const [to, setTo] = useState(() => daysAgo(0));
  const [groupBy, setGroupBy] = useState<GroupBy>('coordinator');
  const [tz, setTz] = useState(browserZone);
  const [clock, setClock] = useState<'wall' | 'business'>('wall');
  const [slaMinutes, setSlaMinutes] = useState(15);
  const [report, setReport] = useState<Report | null>(null);
  const [daily, setDaily] = useState<DailySeries | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [query, setQuery] = useState(() => ({ from, to, groupBy, tz, clock, slaMinutes }));

  const params = (q: typeof query, format?: 'csv') =>
    new URLSearchParams({ groupBy: q.groupBy, from: q.from, to: q.to, tz: q.tz, clock: q.clock, slaMinutes: String(q.slaMinutes), ...(format ? { format } : {}) }).toString();

  useEffect(() => {
    let stale = false;
    setError(null);
    Promise.all([getReport(`/api/ops/reports?${params(query)}`).then((r) => r.json() as Promise<Report>), getReport(`/api/ops/reports/daily?${params(query)}`).then((r) => r.json() as Promise<DailySeries>)]).then(
      ([r, d]) => {
        if (stale) return;
        setReport(r);
        setDaily(d);
      },
      (caught) => !stale && setError(caught instanceof Error ? caught.message : String(caught)),
    );
    return () => void (stale = true);
  }, [query]);

  const apply = (event: FormEvent) => {
    event.preventDefault();
    setQuery({ from, to, groupBy, tz, clock, slaMinutes });
  };

  const downloadCsv = async () => {
    try {
      const response = await getReport(`/api/ops/reports?${params(query, 'csv')}`);
      const url = URL.createObjectURL(await response.blob());
      const link = document.createElement('a');
      link.href = url;
      link.download = `switchboard-${query.groupBy}-${query.from}-${query.to}.csv`;
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10_000);
    } catch (caught) {
      setError(caught instanceof Error ? caught.message : String(caught));
    }
  };

  return (
    <section aria-labelledby="reports-title" className="reports">
      <h2 id="reports-title">Reports</h2>
      <form className="report-filters" onSubmit={apply}>
        <label>
          From <input type="date" value={from} onChange={(e) => setFrom(e.target.value)} required />
        </label>
        <label>
          To <input type="date" value={to} onChange={(e) => setTo(e.target.value)} required />
        </label>
        <label>
          Group by{' '}
          <select value={groupBy} onChange={(e) => setGroupBy(e.target.value as GroupBy)}>
            <option value="coordinator">Coordinator</option>
            <option value="team">Team</option>
            <option value="channel">Channel</option>
          </select>
        </label>
        <label>
          Time zone <input value={tz} onChange={(e) => setTz(e.target.value)} required size={18} list="report-zones" />
          <datalist id="report-zones">
            {zones.map((z) => (
              <option key={z} value={z} />
            ))}
          </datalist>
        </label>
        <label>
          Clock{' '}
          <select value={clock} onChange={(e) => setClock(e.target.value as 'wall' | 'business')}>
            <option value="wall">Wall clock</option>
            <option value="business">Business hours</option>
          </select>
        </label>
        <label>
          SLA (min) <input type="number" min={1} max={10080} value={slaMinutes} onChange={(e) => setSlaMinutes(Number(e.target.value))} size={4} />
        </label>
        <button type="submit">Apply</button>
        <button type="button" className="secondary" onClick={() => void downloadCsv()}>
          Download CSV
        </button>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {report && (
        <>
          <p className="muted clock-note">
            {report.clockNote.replace(/\.?$/, '.')} Times in {report.timeZone}; SLA {report.slaMinutes} min. Scope: {report.scopeNote}.
          </p>
          <table className="report-table">
            <thead>
              <tr>
                <th scope="col">{groupBy === 'coordinator' ? 'Coordinator' : groupBy === 'team' ? 'Team' : 'Channel'}</th>
                <th scope="col">Messages in / out</th>
                <th scope="col">Patients served</th>
                <th scope="col">First response p50 / p90 / max</th>
                <th scope="col">Reply time p50 / p90 / max</th>
                <th scope="col">SLA met</th>
                <th scope="col">Handoffs</th>
              </tr>
            </thead>
            <tbody>
              {[...report.rows, report.total].map((row, i) => (
                <tr key={`${row.key}-${i}`} className={i === report.rows.length ? 'total' : ''}>
                  <th scope="row">{i === report.rows.length ? 'Total' : row.label}</th>
                  <td>
                    {row.messagesIn} / {row.messagesOut}
                  </td>
                  <td>{row.patientsServed}</td>
                  <td>
                    {seconds(row.firstResponse.p50)} / {seconds(row.firstResponse.p90)} / {seconds(row.firstResponse.max)}
                  </td>
                  <td>
                    {seconds(row.replyTime.p50)} / {seconds(row.replyTime.p90)} / {seconds(row.replyTime.max)}
                  </td>
                  <td>{row.slaMetPercent === null ? '—' : `${row.slaMetPercent.toFixed(0)}%`}</td>
                  <td>{row.handoffs ?? '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
          <div className="charts">
            {daily && <TrendChart daily={daily} />}
            <SlaChart rows={report.rows} />
          </div>
        </>
      )}
    </section>
  );
});

/** A uPlot instance bound to a div; recreated when its options or data change. */
function UPlotChart({ title, options, data }: { title: string; options: Omit<uPlot.Options, 'width' | 'height'>; data: uPlot.AlignedData }) {
  const host = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const element = host.current;
    if (!element) return;
    const width = Math.max(280, Math.min(560, element.clientWidth || 480));
    const chart = new uPlot({ ...options, width, height: 240 }, data, element);
    return () => chart.destroy();
  }, [options, data]);
  return (
    <figure className="chart">
      <figcaption>{title}</figcaption>
      <div ref={host} role="img" aria-label={title} />
    </figure>
  );
}

function TrendChart({ daily }: { daily: DailySeries }) {
  const { data, options } = useMemo(() => trendChart(daily), [daily]);
  return <UPlotChart title="Daily messages and first response" options={options} data={data} />;
}

function trendChart(daily: DailySeries) {
  const days = daily.days;
  const x = days.map((_, i) => i);
  const data: uPlot.AlignedData = [
    x,
    days.map((d) => d.total.messagesIn),
    days.map((d) => d.total.messagesOut),
    days.map((d) => (d.total.firstResponse.p50 === null ? null : d.total.firstResponse.p50 / 60)),
  ];
  const options: Omit<uPlot.Options, 'width' | 'height'> = {
    scales: { x: { time: false }, minutes: { auto: true } },
    axes: [
      { values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? (days[t]?.date.slice(5) ?? '') : '')) },
      { label: 'Messages' },
      { scale: 'minutes', side: 1, label: 'First response p50 (min)', grid: { show: false } },
    ],
    series: [
      { label: 'Day', value: (_u, v) => (v === null ? '—' : (days[v]?.date ?? '')) },
      { label: 'In', stroke: '#1a73e8', width: 2 },
      { label: 'Out', stroke: '#188038', width: 2 },
      { label: 'First response p50 (min)', stroke: '#b06000', width: 2, dash: [6, 4], scale: 'minutes', spanGaps: true },
    ],
  };
  return { data, options };
}

function SlaChart({ rows }: { rows: ReportRow[] }) {
  const { data, options } = useMemo(() => slaChart(rows), [rows]);
  return <UPlotChart title="SLA met by group" options={options} data={data} />;
}

function slaChart(rows: ReportRow[]) {
  const x = rows.map((_, i) => i);
  const data: uPlot.AlignedData = [x, rows.map((r) => r.slaMetPercent)];
  const bars = uPlot.paths.bars!({ size: [0.6, 60] });
  const options: Omit<uPlot.Options, 'width' | 'height'> = {
    scales: { x: { time: false, range: () => [-0.5, Math.max(rows.length, 1) - 0.5] }, y: { range: [0, 100] } },
    axes: [{ values: (_u, ticks) => ticks.map((t) => (Number.isInteger(t) ? (rows[t]?.label ?? '') : '')) }, { label: 'SLA met %' }],
    series: [
      { label: 'Group', value: (_u, v) => (v === null ? '—' : (rows[v]?.label ?? '')) },
      { label: 'SLA met %', fill: '#1a73e8aa', stroke: '#1a73e8', paths: bars, points: { show: false } },
    ],
  };
  return { data, options };
}
