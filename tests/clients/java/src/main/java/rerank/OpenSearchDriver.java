// The OpenSearch half of Driver: opensearch-java on its Apache HttpClient 5 transport, Jackson
// as the mapper. The typed client drops the fields its classes do not know (`rerank`,
// `_rerank`) and this transport has no place to read a body off, so the client talks to the
// URL through Recorder, a pass-through on 127.0.0.1 that keeps the last answer's status and
// raw body. The request bodies are read by the client's own request classes.
package rerank;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.StringReader;
import java.net.URISyntaxException;
import java.util.ArrayList;
import java.util.List;
import org.apache.hc.core5.http.HttpHost;
import org.opensearch.client.json.JsonData;
import org.opensearch.client.json.JsonpDeserializer;
import org.opensearch.client.json.JsonpMapper;
import org.opensearch.client.json.jackson.JacksonJsonpMapper;
import org.opensearch.client.opensearch.OpenSearchClient;
import org.opensearch.client.opensearch.core.CountRequest;
import org.opensearch.client.opensearch.core.MgetRequest;
import org.opensearch.client.opensearch.core.MsearchRequest;
import org.opensearch.client.opensearch.core.SearchRequest;
import org.opensearch.client.opensearch.core.SearchResponse;
import org.opensearch.client.opensearch.core.msearch.MultisearchBody;
import org.opensearch.client.opensearch.core.msearch.MultisearchHeader;
import org.opensearch.client.opensearch.core.msearch.RequestItem;
import org.opensearch.client.transport.OpenSearchTransport;
import org.opensearch.client.transport.httpclient5.ApacheHttpClient5TransportBuilder;

final class OpenSearchDriver {
  final JsonpMapper mapper = new JacksonJsonpMapper();
  final OpenSearchTransport transport;
  final OpenSearchClient client;

  OpenSearchDriver(String url) throws URISyntaxException {
    transport = ApacheHttpClient5TransportBuilder.builder(HttpHost.create(url)).setMapper(mapper).build();
    client = new OpenSearchClient(transport);
  }

  static String version() {
    return org.opensearch.client.transport.Version.VERSION.toString();
  }

  <T> T read(JsonpDeserializer<T> deserializer, JsonNode node) {
    return deserializer.deserialize(
        mapper.jsonProvider().createParser(new StringReader(node.toString())), mapper);
  }

  Object call(JsonNode step) throws IOException {
    String op = step.get("op").asText();
    String index = step.hasNonNull("index") ? step.get("index").asText() : null;
    switch (op) {
      case "info":
        return client.info();
      case "search":
        {
          SearchRequest request =
              read(SearchRequest._DESERIALIZER, step.get("body")).toBuilder().index(index).build();
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
            MultisearchHeader header = read(MultisearchHeader._DESERIALIZER, searches.get(i));
            MultisearchBody body = read(MultisearchBody._DESERIALIZER, searches.get(i + 1));
            items.add(RequestItem.of(r -> r.header(header).body(body)));
          }
          MsearchRequest request =
              MsearchRequest.of(b -> (index == null ? b : b.index(index)).searches(items));
          return client.msearch(request, JsonData.class);
        }
      case "count":
        {
          JsonNode body = step.hasNonNull("body") ? step.get("body") : Driver.JSON.createObjectNode();
          return client.count(read(CountRequest._DESERIALIZER, body).toBuilder().index(index).build());
        }
      case "get":
        return client.get(g -> g.index(index).id(step.get("id").asText()), JsonData.class);
      case "mget":
        return client.mget(
            read(MgetRequest._DESERIALIZER, step.get("body")).toBuilder().index(index).build(),
            JsonData.class);
      default:
        throw new IllegalArgumentException("unknown op " + op);
    }
  }
}
