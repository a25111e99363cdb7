using System.Text;

namespace QanaEdge.Training.Data;

/// <summary>
/// A small RFC 4180 reader: comma separated, optional double quotes (a doubled quote inside quotes is a
/// literal quote), CRLF, LF or CR line ends, a UTF-8 byte-order mark tolerated. Quoted fields may span lines.
/// Enough for the HAM10000 metadata and for what spreadsheet programs write back.
/// </summary>
internal static class CsvReader
{
    /// <summary>Yields (1-based line number where the record starts, fields). Blank lines are skipped.
    /// <paramref name="sourceName"/> names the file in errors, as the caller's own errors do.</summary>
    public static IEnumerable<(int Line, List<string> Fields)> Read(TextReader reader, string sourceName)
    {
        var fields = new List<string>();
        var field = new StringBuilder();
        int line = 1, recordLine = 1;
        bool inQuotes = false, fieldQuoted = false, any = false;
        int c;
        while ((c = reader.Read()) >= 0)
        {
            char ch = (char)c;
            if (inQuotes)
            {
                if (ch == '"')
                {
                    if (reader.Peek() == '"') { reader.Read(); field.Append('"'); }
                    else inQuotes = false;
                }
                else
                {
                    if (ch == '\n') line++;
                    field.Append(ch);
                }
                continue;
            }
            switch (ch)
            {
                case '"' when field.Length == 0 && !fieldQuoted:
                    inQuotes = true; fieldQuoted = true; any = true;
                    break;
                case ',':
                    fields.Add(field.ToString()); field.Clear(); fieldQuoted = false; any = true;
                    break;
                case '\r':
                    // CR LF: the LF ends the record. A CR alone is a line end too (classic Mac files, Excel's
                    // "CSV (Macintosh)"): dropping it made such a file one header record with no rows.
                    if (reader.Peek() == '\n') break;
                    goto case '\n';
                case '\n':
                    if (any || field.Length > 0)
                    {
                        fields.Add(field.ToString());
                        yield return (recordLine, fields);
                        fields = new List<string>();
                    }
                    field.Clear(); fieldQuoted = false; any = false;
                    line++; recordLine = line;
                    break;
                default:
                    field.Append(ch); any = true;
                    break;
            }
        }
        if (inQuotes) throw new DatasetException($"{sourceName} line {recordLine}: a quoted field is not closed before the end of the file");
        if (any || field.Length > 0)
        {
            fields.Add(field.ToString());
            yield return (recordLine, fields);
        }
    }

    /// <summary>Quotes a field when it contains a comma, quote or line break.</summary>
    public static string Escape(string value) =>
        value.AsSpan().IndexOfAny(",\"\r\n") >= 0 ? "\"" + value.Replace("\"", "\"\"") + "\"" : value;
}
