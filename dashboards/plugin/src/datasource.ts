import { DataSourceInstanceSettings, CoreApp, ScopedVars } from '@grafana/data';
import { DataSourceWithBackend, getTemplateSrv } from '@grafana/runtime';

import { FirewatchQuery, FirewatchOptions, DEFAULT_QUERY } from './types';

/**
 * DataSource sends queries to the Go backend. Frames of the "transitions"
 * query carry a live channel; DataSourceWithBackend subscribes to it, so the
 * panel updates as the backend streams alarm transitions.
 */
export class DataSource extends DataSourceWithBackend<FirewatchQuery, FirewatchOptions> {
  constructor(instanceSettings: DataSourceInstanceSettings<FirewatchOptions>) {
    super(instanceSettings);
  }

  getDefaultQuery(_: CoreApp): Partial<FirewatchQuery> {
    return DEFAULT_QUERY;
  }

  applyTemplateVariables(query: FirewatchQuery, scopedVars: ScopedVars): FirewatchQuery {
    const t = getTemplateSrv();
    const r = (s?: string) => (s === undefined ? s : t.replace(s, scopedVars));
    return {
      ...query,
      state: r(query.state),
      severity: r(query.severity),
      grid: r(query.grid),
      device: r(query.device),
      level: r(query.level),
    };
  }

  filterQuery(query: FirewatchQuery): boolean {
    return !query.hide;
  }
}
