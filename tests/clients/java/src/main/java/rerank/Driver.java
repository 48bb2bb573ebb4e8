// Runs an official Java engine client, as its users call it, and prints what every call
// answered. Built and started by tests/integration/official_clients.py (pom.xml pins the
// clients):
//
//     java -cp CLASSPATH rerank.Driver elasticsearch URL  < plan.json  > answers.json
//
// Same plan and answer shapes as client_driver.py: per call {"ok": true, "body": raw body} or
// {"ok": false, "error": the exception's class, "status", "body"}. The typed client drops the
// fields its classes do not know (`rerank`, `_rerank`), so the raw body is read off the wire
// by a wrapper around the client's own HTTP client; "typed_ids" is the order the typed
// response holds. Nothing here asserts.
package rerank;

import co.elastic.clients.elasticsearch.ElasticsearchClient;
import co.elastic.clients.elasticsearch.core.CountRequest;
import co.elastic.clients.elasticsearch.core.MgetRequest;
import co.elastic.clients.elasticsearch.core.MsearchRequest;
import co.elastic.clients.elasticsearch.core.SearchRequest;
import co.elastic.clients.elasticsearch.core.SearchResponse;
import co.elastic.clients.elasticsearch.core.msearch.RequestItem;
import co.elastic.clients.json.JsonData;
import co.elastic.clients.json.jackson.JacksonJsonpMapper;
import co.elastic.clients.transport.ElasticsearchTransportBase;
import co.elastic.clients.transport.TransportOptions;
import co.elastic.clients.transport.http.TransportHttpClient;
import co.elastic.clients.transport.rest_client.RestClientHttpClient;
import co.elastic.clients.util.BinaryData;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.StringReader;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import org.apache.http.HttpHost;
import org.elasticsearch.client.RestClient;

public final class Driver {
  static final ObjectMapper JSON = new ObjectMapper();

  /** The client's HTTP client, keeping the status and body of the last response. */
  static final class Recording implements TransportHttpClient {
    final TransportHttpClient inner;
    Integer status;
    byte[] body;

    Recording(TransportHttpClient inner) {
      this.inner = inner;
    }

    @Override
    public TransportOptions createOptions(TransportOptions options) {
      return inner.createOptions(options);
    }

    @Override
    public Response performRequest(String id, Node node, Request request, TransportOptions options)
        throws IOException {
      Response response = inner.performRequest(id, node, request, options);
      BinaryData data = response.body();
      status = response.statusCode();
      body = null;
      if (data == null) {
        return response;
      }
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      data.writeTo(out);
      body = out.toByteArray();
      BinaryData copy = BinaryData.of(body, data.contentType());
      return new Response() {
        public Node node() {
          return response.node();
        }

        public int statusCode() {
          return response.statusCode();
        }

        public String header(String name) {
          return response.header(name);
        }

        public List<String> headers(String name) {
          return response.headers(name);
        }

        public BinaryData body() {
          return copy;
        }

        public Object originalResponse() {
          return response.originalResponse();
        }

        public void close() throws IOException {
          response.close();
        }
      };
    }

    @Override
    public CompletableFuture<Response> performRequestAsync(
        String id, Node node, Request request, TransportOptions options) {
      return inner.performRequestAsync(id, node, request, options);
    }

    @Override
    public void close() throws IOException {
      inner.close();
    }
  }

  static StringReader json(JsonNode node) {
    return new StringReader(node.toString());
  }

  static Object elasticsearch(ElasticsearchClient client, JsonNode step) throws IOException {
    String op = step.get("op").asText();
    String index = step.hasNonNull("index") ? step.get("index").asText() : null;
    switch (op) {
      case "info":
        return client.info();
      case "search":
        {
          SearchRequest request =
              SearchRequest.of(b -> b.withJson(json(step.get("body"))).index(index));
          SearchResponse<JsonData> answer = client.search(request, JsonData.class);
          List<String> ids = new ArrayList<>();
          answer.hits().hits().forEach(h -> ids.add(h.id()));
          return ids;
        }
      case "msearch":
        {
          JsonNode searches = step.get("searches");
          List<RequestItem> items = new ArrayList<>();
          for (int i = 0; i + 1 < searches.size(); i += 2) {
            JsonNode header = searches.get(i);
            JsonNode body = searches.get(i + 1);
            items.add(
                RequestItem.of(
                    r -> r.header(h -> h.withJson(json(header))).body(s -> s.withJson(json(body)))));
          }
          MsearchRequest request =
              MsearchRequest.of(b -> (index == null ? b : b.index(index)).searches(items));
          return client.msearch(request, JsonData.class);
        }
      case "count":
        {
          JsonNode body = step.hasNonNull("body") ? step.get("body") : JSON.createObjectNode();
          return client.count(CountRequest.of(b -> b.withJson(json(body)).index(index)));
        }
      case "get":
        return client.get(g -> g.index(index).id(step.get("id").asText()), JsonData.class);
      case "mget":
        return client.mget(
            MgetRequest.of(b -> b.withJson(json(step.get("body"))).index(index)), JsonData.class);
      default:
        throw new IllegalArgumentException("unknown op " + op);
    }
  }

  public static void main(String[] args) throws Exception {
    String kind = args[0];
    String url = args[1];
    JsonNode plan = JSON.readTree(System.in);
    ObjectNode result = JSON.createObjectNode();
    ArrayNode answers = result.putArray("answers");
    if (kind.equals("opensearch")) {
      opensearch(url, plan, result, answers);
      return;
    }
    if (!kind.equals("elasticsearch")) {
      throw new IllegalArgumentException("unknown kind " + kind);
    }
    RestClient rest = RestClient.builder(HttpHost.create(url)).build();
    Recording http = new Recording(new RestClientHttpClient(rest));
    ElasticsearchTransportBase transport =
        new ElasticsearchTransportBase(http, null, new JacksonJsonpMapper()) {};
    ElasticsearchClient client = new ElasticsearchClient(transport);
    result.put("version", co.elastic.clients.transport.Version.VERSION.toString());
    for (JsonNode step : plan) {
      ObjectNode answer = JSON.createObjectNode();
      http.status = null;
      http.body = null;
      try {
        Object typed = elasticsearch(client, step);
        answer.put("ok", true);
        if (typed instanceof List<?> ids) {
          answer.set("typed_ids", JSON.valueToTree(ids));
        }
      } catch (Exception exc) {
        answer.put("ok", false);
        answer.put("error", exc.getClass().getSimpleName());
        if (http.body == null || http.status < 300) { // the client's own failure
          answer.put("message", String.valueOf(exc.getMessage()));
        }
      }
      record(answer, http.status, http.body);
      answers.add(answer);
    }
    rest.close();
    System.out.println(JSON.writeValueAsString(result));
  }

  static void record(ObjectNode answer, Integer status, byte[] body) throws IOException {
    if (status != null) {
      answer.put("status", status);
    } else {
      answer.putNull("status");
    }
    if (body != null && body.length > 0) {
      answer.set("body", JSON.readTree(body));
    } else {
      answer.putNull("body");
    }
  }

  static void opensearch(String url, JsonNode plan, ObjectNode result, ArrayNode answers)
      throws Exception {
    Recorder recorder = new Recorder(url);
    OpenSearchDriver driver = new OpenSearchDriver(recorder.url());
    result.put("version", OpenSearchDriver.version());
    for (JsonNode step : plan) {
      ObjectNode answer = JSON.createObjectNode();
      recorder.status = null;
      recorder.body = null;
      try {
        Object typed = driver.call(step);
        answer.put("ok", true);
        if (typed instanceof List<?> ids) {
          answer.set("typed_ids", JSON.valueToTree(ids));
        }
      } catch (Exception exc) {
        answer.put("ok", false);
        answer.put("error", exc.getClass().getSimpleName());
        if (recorder.body == null || recorder.status < 300) { // the client's own failure
          answer.put("message", String.valueOf(exc.getMessage()));
        }
      }
      record(answer, recorder.status, recorder.body);
      answers.add(answer);
    }
    driver.transport.close();
    recorder.stop();
    System.out.println(JSON.writeValueAsString(result));
  }
}
