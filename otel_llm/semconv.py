"""Every attribute and metric name otel-llm emits, in one place.

Names under ``gen_ai.*``, ``hw.*``, ``error.type``, ``server.*`` come from the
OpenTelemetry semantic conventions, version :data:`SEMCONV_VERSION` (GenAI and
hardware conventions are "Development" status there; a test checks each name
against the installed ``opentelemetry-semantic-conventions`` package).

Where the conventions have no name (queue / prefill / decode time, the
inter-token gap distribution, stalls, batch size, KV-cache use, GPU profiling
fields, detector outputs) we use our own documented namespace ``otel_llm.*``.
Each such name is documented in ``docs/semconv.md``.

Rules kept here:

* metric attributes are low-cardinality (model, provider, operation,
  error.type, GPU id, host) -- never request ids, user ids or prompts;
* high-cardinality facts (response id, per-request GPU UUIDs, token gap
  percentiles) live on spans only.
"""

from __future__ import annotations

from typing import Final

SEMCONV_VERSION: Final = "1.44.0"
SCHEMA_URL: Final = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

# --------------------------------------------------------------------------
# GenAI attributes (semconv)
# --------------------------------------------------------------------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
GEN_AI_REQUEST_TOP_K: Final = "gen_ai.request.top_k"
GEN_AI_REQUEST_SEED: Final = "gen_ai.request.seed"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
GEN_AI_REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
GEN_AI_REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TOKEN_TYPE: Final = "gen_ai.token.type"
GEN_AI_INPUT_MESSAGES: Final = "gen_ai.input.messages"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
GEN_AI_OUTPUT_TYPE: Final = "gen_ai.output.type"
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
# Callee of a CLIENT span when the callee is not instrumented (RCA names the
# downstream after the first present; db.system / net.peer.name are the older
# names still found in recorded traces).
PEER_SERVICE: Final = "peer.service"
DB_SYSTEM_NAME: Final = "db.system.name"
DB_SYSTEM: Final = "db.system"
NET_PEER_NAME: Final = "net.peer.name"
HTTP_STATUS_CODE: Final = "http.status_code"  # deprecated name of http.response.status_code, still in recorded traces

# Well-known values
OPERATION_CHAT: Final = "chat"
OPERATION_TEXT_COMPLETION: Final = "text_completion"
OPERATION_EMBEDDINGS: Final = "embeddings"
OPERATION_GENERATE_CONTENT: Final = "generate_content"
TOKEN_TYPE_INPUT: Final = "input"
TOKEN_TYPE_OUTPUT: Final = "output"
PROVIDER_TRANSFORMERS: Final = "huggingface.transformers"  # own value: semconv lists hosted providers only
PROVIDER_VLLM: Final = "vllm"
PROVIDER_OPENAI_COMPATIBLE: Final = "openai_compatible"
ERROR_TYPE_OTHER: Final = "_OTHER"

# --------------------------------------------------------------------------
# GenAI metrics (semconv)
# --------------------------------------------------------------------------
GEN_AI_SERVER_REQUEST_DURATION: Final = "gen_ai.server.request.duration"
GEN_AI_SERVER_TIME_TO_FIRST_TOKEN: Final = "gen_ai.server.time_to_first_token"
GEN_AI_SERVER_TIME_PER_OUTPUT_TOKEN: Final = "gen_ai.server.time_per_output_token"
# Semconv defines token usage as a client histogram only; a model server
# reports the same instrument (name, unit, buckets, gen_ai.token.type) so
# dashboards built for the convention work unchanged.
GEN_AI_CLIENT_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
GEN_AI_CLIENT_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"

# Advisory bucket boundaries from the semantic conventions.
BUCKETS_DURATION_S: Final = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
BUCKETS_TTFT_S: Final = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
BUCKETS_TPOT_S: Final = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)
BUCKETS_TOKENS: Final = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
# Own buckets for per-token gaps and stage times: finer at the low end,
# where CPU and fast-GPU decode steps live (0.5 ms .. 10 s).
BUCKETS_GAP_S: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BUCKETS_STAGE_S: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# --------------------------------------------------------------------------
# otel_llm.* -- our own namespace where semconv has no name
# --------------------------------------------------------------------------
# Span attributes (high cardinality allowed: spans only)
OTEL_LLM_TTFT: Final = "otel_llm.response.time_to_first_token"  # s
OTEL_LLM_TPOT: Final = "otel_llm.response.time_per_output_token"  # s, mean after the first token
OTEL_LLM_GAP_P50: Final = "otel_llm.token_gap.p50"  # s
OTEL_LLM_GAP_P90: Final = "otel_llm.token_gap.p90"
OTEL_LLM_GAP_P99: Final = "otel_llm.token_gap.p99"
OTEL_LLM_GAP_MAX: Final = "otel_llm.token_gap.max"
OTEL_LLM_GAP_STALLS: Final = "otel_llm.token_gap.stalls"  # count of gaps > stall threshold
OTEL_LLM_STALL_THRESHOLD: Final = "otel_llm.token_gap.stall_threshold"  # s
OTEL_LLM_QUEUE_TIME: Final = "otel_llm.queue.duration"  # s
OTEL_LLM_PREFILL_TIME: Final = "otel_llm.prefill.duration"  # s
OTEL_LLM_DECODE_TIME: Final = "otel_llm.decode.duration"  # s
OTEL_LLM_BATCH_SIZE: Final = "otel_llm.batch.size"
OTEL_LLM_STAGE: Final = "otel_llm.stage"  # queue | prefill | decode | tokenize | detokenize | downstream
OTEL_LLM_GPU_UUIDS: Final = "otel_llm.gpu.uuids"  # string[]: GPUs the serving process uses
OTEL_LLM_INPUT_TOKENS_PER_SEQUENCE: Final = "otel_llm.usage.input_tokens_per_sequence"  # int[]
OTEL_LLM_OUTPUT_TOKENS_PER_SEQUENCE: Final = "otel_llm.usage.output_tokens_per_sequence"  # int[]
OTEL_LLM_CONTENT_TRUNCATED: Final = "otel_llm.content.truncated"

STAGE_QUEUE: Final = "queue"
STAGE_PREFILL: Final = "prefill"
STAGE_DECODE: Final = "decode"
STAGE_TOKENIZE: Final = "tokenize"
STAGE_DOWNSTREAM: Final = "downstream"

# Server metrics (own)
OTEL_LLM_SERVER_QUEUE_DURATION: Final = "otel_llm.server.queue.duration"  # histogram, s
OTEL_LLM_SERVER_PREFILL_DURATION: Final = "otel_llm.server.prefill.duration"  # histogram, s
OTEL_LLM_SERVER_DECODE_DURATION: Final = "otel_llm.server.decode.duration"  # histogram, s
OTEL_LLM_SERVER_TOKEN_GAP: Final = "otel_llm.server.token_gap"  # histogram of inter-token gaps, s
OTEL_LLM_SERVER_STALLS: Final = "otel_llm.server.stalls"  # counter of gaps above the stall threshold
OTEL_LLM_SERVER_BATCH_SIZE: Final = "otel_llm.server.batch.size"  # histogram, {sequence}
OTEL_LLM_SERVER_REQUESTS_RUNNING: Final = "otel_llm.server.requests.running"  # updowncounter
OTEL_LLM_SERVER_REQUESTS_WAITING: Final = "otel_llm.server.requests.waiting"  # updowncounter
OTEL_LLM_SERVER_KV_CACHE_UTILIZATION: Final = "otel_llm.server.kv_cache.utilization"  # gauge, ratio 0..1
OTEL_LLM_SERVER_PREEMPTIONS: Final = "otel_llm.server.preemptions"  # counter
OTEL_LLM_SERVER_REPLICA: Final = "otel_llm.server.replica"  # attribute: which server/engine in a process ("0", "1"...)

# vLLM bridge (own): vllm:* series with no semconv/otel_llm.server name keep
# their vLLM name under this prefix (``vllm:iteration_tokens_total`` ->
# ``otel_llm.vllm.iteration_tokens_total``); their labels other than
# model_name become ``otel_llm.vllm.<label>`` attributes.
OTEL_LLM_VLLM_PREFIX: Final = "otel_llm.vllm."
OTEL_LLM_VLLM_SCRAPE_ERRORS: Final = "otel_llm.vllm.scrape.errors"  # counter, error.type
OTEL_LLM_VLLM_SCRAPE_DURATION: Final = "otel_llm.vllm.scrape.duration"  # gauge, s, last scrape

# OpenAI-compatible server middleware (own span attributes)
OTEL_LLM_TOKEN_COUNT_SOURCE: Final = "otel_llm.response.token_count_source"  # usage | chunks | tokenizer
OTEL_LLM_RESPONSE_CHUNKS: Final = "otel_llm.response.chunks"  # SSE data chunks streamed
OTEL_LLM_CLIENT_DISCONNECTED: Final = "otel_llm.client.disconnected"  # bool
OTEL_LLM_KV_CACHE_SIMULATED: Final = "otel_llm.kv_cache.simulated"  # bool, reference server
# HTTP server attributes on the middleware's SERVER span (semconv http.* / url.*)
HTTP_REQUEST_METHOD: Final = "http.request.method"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
URL_PATH: Final = "url.path"

# torch process GPU memory (own)
OTEL_LLM_TORCH_MEMORY_ALLOCATED: Final = "otel_llm.torch.cuda.memory.allocated"  # By
OTEL_LLM_TORCH_MEMORY_RESERVED: Final = "otel_llm.torch.cuda.memory.reserved"  # By
OTEL_LLM_TORCH_MEMORY_PEAK: Final = "otel_llm.torch.cuda.memory.peak"  # By
OTEL_LLM_TORCH_OOM: Final = "otel_llm.torch.cuda.oom"  # counter
OTEL_LLM_TORCH_MODULE: Final = "otel_llm.torch.module"  # span attribute: nn.Module class of a forward span

# Self-telemetry (own): errors inside otel-llm, never the host's
OTEL_LLM_INSTRUMENTATION_ERRORS: Final = "otel_llm.instrumentation.errors"  # counter, attrs: component, error.type
OTEL_LLM_DROPPED: Final = "otel_llm.dropped"  # counter, attrs: component, reason

# --------------------------------------------------------------------------
# Hardware / GPU (semconv hw.*)
# --------------------------------------------------------------------------
HW_ID: Final = "hw.id"
HW_NAME: Final = "hw.name"
HW_TYPE: Final = "hw.type"
HW_VENDOR: Final = "hw.vendor"
HW_MODEL: Final = "hw.model"
HW_STATE: Final = "hw.state"
HW_DRIVER_VERSION: Final = "hw.driver_version"
HW_GPU_TASK: Final = "hw.gpu.task"
HW_GPU_UTILIZATION: Final = "hw.gpu.utilization"  # ratio 0..1
HW_GPU_MEMORY_USAGE: Final = "hw.gpu.memory.usage"  # By
HW_GPU_MEMORY_LIMIT: Final = "hw.gpu.memory.limit"  # By
HW_GPU_MEMORY_UTILIZATION: Final = "hw.gpu.memory.utilization"  # ratio
HW_GPU_IO: Final = "hw.gpu.io"  # By
HW_POWER: Final = "hw.power"  # W
HW_ENERGY: Final = "hw.energy"  # J
HW_TEMPERATURE: Final = "hw.temperature"  # Cel
HW_ERRORS: Final = "hw.errors"  # counter, error.type
HW_STATUS: Final = "hw.status"  # updowncounter 0/1 per hw.state
HW_SENSOR_LOCATION: Final = "hw.sensor_location"  # hw.temperature: "gpu" | "memory"
NETWORK_IO_DIRECTION: Final = "network.io.direction"
HOST_NAME: Final = "host.name"
K8S_POD_NAME: Final = "k8s.pod.name"
K8S_NAMESPACE_NAME: Final = "k8s.namespace.name"
K8S_CONTAINER_NAME: Final = "k8s.container.name"

# GPU attributes and metrics with no semconv name (own)
OTEL_LLM_GPU_INDEX: Final = "otel_llm.gpu.index"
OTEL_LLM_GPU_MIG_PROFILE: Final = "otel_llm.gpu.mig.profile"
OTEL_LLM_GPU_MIG_INSTANCE: Final = "otel_llm.gpu.mig.instance"
OTEL_LLM_GPU_XID: Final = "otel_llm.gpu.xid"  # attribute: the XID code
OTEL_LLM_GPU_SM_ACTIVE: Final = "otel_llm.gpu.sm.active"  # ratio
OTEL_LLM_GPU_SM_OCCUPANCY: Final = "otel_llm.gpu.sm.occupancy"  # ratio
OTEL_LLM_GPU_TENSOR_ACTIVE: Final = "otel_llm.gpu.tensor.active"  # ratio
OTEL_LLM_GPU_DRAM_ACTIVE: Final = "otel_llm.gpu.dram.active"  # ratio
OTEL_LLM_GPU_GRAPHICS_ACTIVE: Final = "otel_llm.gpu.graphics.active"  # ratio
OTEL_LLM_GPU_CLOCK_SM: Final = "otel_llm.gpu.clock.sm"  # Hz
OTEL_LLM_GPU_CLOCK_MEMORY: Final = "otel_llm.gpu.clock.memory"  # Hz
OTEL_LLM_GPU_THROTTLE: Final = "otel_llm.gpu.throttle"  # state set: 1 when the reason is active
OTEL_LLM_GPU_THROTTLE_REASON: Final = "otel_llm.gpu.throttle.reason"  # attribute
OTEL_LLM_GPU_XID_EVENTS: Final = "otel_llm.gpu.xid.events"  # counter, otel_llm.gpu.xid
OTEL_LLM_GPU_PCIE_IO: Final = "otel_llm.gpu.pcie.io"  # gauge By/s (DCGM profiling rate), network.io.direction
OTEL_LLM_GPU_NVLINK_IO: Final = "otel_llm.gpu.nvlink.io"  # gauge By/s, network.io.direction
OTEL_LLM_GPU_MEMORY_COPY_UTILIZATION: Final = "otel_llm.gpu.memory_copy.utilization"  # ratio: memory read/write busy time
OTEL_LLM_GPU_PCIE_REPLAYS: Final = "otel_llm.gpu.pcie.replays"  # counter
OTEL_LLM_GPU_ROW_REMAP: Final = "otel_llm.gpu.row_remap"  # counter, attr otel_llm.gpu.row_remap.type
OTEL_LLM_GPU_ROW_REMAP_TYPE: Final = "otel_llm.gpu.row_remap.type"
OTEL_LLM_GPU_SCRAPE_ERRORS: Final = "otel_llm.gpu.scrape.errors"  # counter, error.type

# --------------------------------------------------------------------------
# Processors (own)
# --------------------------------------------------------------------------
OTEL_LLM_THRESHOLD_UPPER: Final = "otel_llm.threshold.upper"  # gauge, series attributes
OTEL_LLM_THRESHOLD_LOWER: Final = "otel_llm.threshold.lower"
OTEL_LLM_THRESHOLD_FORECAST: Final = "otel_llm.threshold.forecast"
OTEL_LLM_ANOMALY_SCORE: Final = "otel_llm.anomaly.score"  # gauge 0..1
OTEL_LLM_ANOMALY_REQUESTS: Final = "otel_llm.anomaly.requests"  # counter of anomalous requests
OTEL_LLM_DETECTIONS: Final = "otel_llm.detections"  # counter, attrs: detector, severity
OTEL_LLM_INCIDENTS_OPEN: Final = "otel_llm.incidents.open"  # updowncounter
OTEL_LLM_SERIES: Final = "otel_llm.series"  # attribute: the series key
OTEL_LLM_METRIC: Final = "otel_llm.metric"  # attribute: the source metric name
OTEL_LLM_DETECTOR: Final = "otel_llm.detector"
OTEL_LLM_SEVERITY: Final = "otel_llm.severity"
OTEL_LLM_LEVEL: Final = "otel_llm.level"  # attribute: the band's confidence level
OTEL_LLM_COMPONENT: Final = "otel_llm.component"
OTEL_LLM_REASON: Final = "otel_llm.reason"
OTEL_LLM_STATISTIC: Final = "otel_llm.statistic"  # attribute: p95 | count, on span-derived threshold series
