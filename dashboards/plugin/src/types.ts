import { DataQuery, DataSourceJsonData } from '@grafana/data';

/** Query types answered by the backend (pkg/plugin/query.go). */
export type QueryType = 'alarms' | 'devices' | 'grid' | 'open_by_severity' | 'stats' | 'transitions';

export interface FirewatchQuery extends DataQuery {
  queryType?: QueryType;
  /** open, closed, a lifecycle state, or all */
  state?: string;
  /** fire, alarm, warning, fault, offline, or all */
  severity?: string;
  /** administrative code prefix (6, 9 or 12 digits); empty for all */
  grid?: string;
  device?: string;
  offline?: boolean;
  /** grid summary level: village, town or county */
  level?: string;
  limit?: number;
}

export const DEFAULT_QUERY: Partial<FirewatchQuery> = {
  queryType: 'alarms',
  state: 'open',
  severity: 'all',
};

/** jsonData of the data source (pkg/plugin/datasource.go Settings). */
export interface FirewatchOptions extends DataSourceJsonData {
  url?: string;
  timeoutSeconds?: number;
  pollSeconds?: number;
}

/** secureJsonData: the API token never comes back to the browser. */
export interface FirewatchSecureOptions {
  token?: string;
}
